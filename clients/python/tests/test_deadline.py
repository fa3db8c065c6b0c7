"""The holder's deadline and the small pure parts, without a server."""

from __future__ import annotations

import os

import pytest

import tenure
from tenure import _inputs
from tenure.deadline import drift_ppm, holder_deadline, most_of_the_lease_left

SENT = 1000.0  # any reading of the holder's clock


def test_deadline_is_the_ttl_shrunk_by_twice_the_drift_minus_the_margin_from_the_send_time() -> None:
    # 10 s · (1 − 2·0.001) − 150 ms = 9.980 s − 0.150 s.
    assert holder_deadline(SENT, 10_000, 1000, 0.150) == pytest.approx(SENT + 9.830, abs=1e-9)


def test_the_deadline_never_reaches_sent_plus_ttl_even_without_a_margin() -> None:
    for ms in (10, 11, 999, 1_000, 30_000, 86_400_000):
        assert holder_deadline(SENT, ms, 1000, 0.0) < SENT + ms / 1000, ms


def test_a_margin_larger_than_the_usable_ttl_gives_a_deadline_at_the_send_time() -> None:
    assert holder_deadline(SENT, 100, 1000, 1.0) == SENT


def test_the_deadline_counts_from_the_send_time_not_the_reply() -> None:
    # A long poll sent 20 s ago that won just now: its 10 s grant is past.
    reply = SENT + 20.0
    assert holder_deadline(SENT, 10_000, 1000, 0.0) < reply


def test_a_larger_drift_bound_gives_an_earlier_deadline() -> None:
    # 10 s · (1 − 2·0.05) = 9 s, against 9.98 s at the default.
    assert holder_deadline(SENT, 10_000, 50_000, 0.0) == pytest.approx(SENT + 9.0, abs=1e-9)
    assert holder_deadline(SENT, 10_000, 50_000) < holder_deadline(SENT, 10_000)


def test_the_usable_ttl_rounds_down_to_whole_microseconds() -> None:
    # 11 ms · 0.998 = 10.978 ms exactly; 1 ms·0.998 = 998 µs.
    assert holder_deadline(0.0, 11, 1000) == pytest.approx(0.010978, abs=1e-12)
    assert holder_deadline(0.0, 1, 1000) == pytest.approx(0.000998, abs=1e-12)


def test_a_grant_is_trusted_as_is_only_while_most_of_its_lease_is_left() -> None:
    def left(after_ms: int) -> bool:
        return most_of_the_lease_left(SENT, SENT + after_ms / 1000, 9_000, 1000, 0.0)

    assert left(5)
    assert left(2_900)
    assert not left(3_100)
    assert not left(20_000)


def test_a_grant_counts_with_the_drift_bound_it_carries() -> None:
    grant = tenure.Grant(token=3, holder="h", ttl_ms=10_000, max_drift_ppm=50_000, sent=SENT)
    assert grant.deadline(0.5) == pytest.approx(SENT + 8.5, abs=1e-9)
    assert grant.ttl == 10.0


def test_a_missing_or_impossible_drift_bound_means_the_default() -> None:
    assert drift_ppm(None) == 1000
    assert drift_ppm(True) == 1000
    assert drift_ppm(-1) == 1000
    assert drift_ppm(100_001) == 1000
    assert drift_ppm(250) == 250


def test_durations_become_the_milliseconds_the_api_takes() -> None:
    assert _inputs.ttl_ms(10.0) == 10_000
    assert _inputs.ttl_ms(0.3) == 300
    assert _inputs.wait_ms(0.0005) == 1  # a wait rounds up, never down
    assert _inputs.wait_ms(30.0) == 30_000
    for bad in (0.001, 86_401.0, float("nan"), -1.0):
        with pytest.raises(tenure.Invalid) as e:
            _inputs.ttl_ms(bad)
        assert e.value.field == "ttl"


def test_default_holder_ids_are_valid_and_differ_between_calls() -> None:
    a, b = tenure.default_holder_id(), tenure.default_holder_id()
    assert a != b
    assert _inputs.holder(a) == a
    assert f":{os.getpid()}:" in a


def test_names_holders_and_endpoints_are_checked_before_anything_is_sent() -> None:
    with pytest.raises(tenure.Invalid) as e:
        _inputs.name("no spaces")
    assert e.value.field == "name"
    with pytest.raises(tenure.Invalid):
        _inputs.holder("web 1")
    with pytest.raises(tenure.Invalid):
        tenure.Client(["127.0.0.1:7400"])
    with pytest.raises(tenure.Invalid):
        tenure.Client(["ftp://a:1"])
    with pytest.raises(tenure.Invalid):
        tenure.Client([])
    assert tenure.Client("http://a:1, http://b:2/").endpoints == ["http://a:1", "http://b:2"]


def test_endpoints_default_to_the_environment_then_the_dev_ports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TENURE_ENDPOINTS", "http://x:1,http://y:2")
    assert tenure.Client().endpoints == ["http://x:1", "http://y:2"]
    monkeypatch.delenv("TENURE_ENDPOINTS")
    assert tenure.Client().endpoints == list(tenure.DEV_ENDPOINTS)


def test_every_state_the_server_reports_parses() -> None:
    held = tenure.LeaseState.from_json(
        {"state": "held", "holder": "web-1", "token": 1, "remaining_ms": 9987,
         "ttl_ms": 10000, "waiters": 2, "error": "x"}
    )
    assert (held.holder, held.token, held.remaining, held.waiters) == ("web-1", 1, 9.987, 2)
    assert held.leader() == tenure.Leader("web-1", 1)
    assert tenure.LeaseState.from_json({"state": "free", "token": 4}).leader() is None
    delayed = tenure.LeaseState.from_json(
        {"state": "lock_delayed", "holder": "a", "token": 2, "remaining_ms": 5}
    )
    assert delayed.remaining == 0.005
    down = tenure.LeaseState.from_json({"state": "unavailable", "error": "no quorum"})
    assert down.token is None
    with pytest.raises(ValueError):
        tenure.LeaseState.from_json({"state": "held", "token": 1})
