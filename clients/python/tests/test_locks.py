"""Locks against a real ``tenure dev`` cluster: grant, conflict, waiting,
renewal, and the refusals a user can meet."""

from __future__ import annotations

import threading
import time
from typing import Iterator

import pytest

import tenure
from servers import Dev, free_ports, wait_until


@pytest.fixture
def client(dev: Dev) -> Iterator[tenure.Client]:
    with tenure.Client(dev.urls) as c:
        yield c


class Waiter(threading.Thread):
    """Acquires in the background, keeping what came of it."""

    def __init__(self, lock: tenure.Lock) -> None:
        super().__init__(daemon=True)
        self.lock = lock
        self.lease: tenure.Lease | None = None
        self.error: BaseException | None = None
        self.done_at = 0.0

    def run(self) -> None:
        try:
            self.lease = self.lock.acquire()
        except BaseException as e:  # handed to the test thread
            self.error = e
        self.done_at = self.lock.client.clock()

    def outcome(self, within: float) -> tenure.Lease:
        self.join(within)
        assert not self.is_alive(), f"no answer within {within} s"
        if self.error is not None:
            raise self.error
        assert self.lease is not None
        return self.lease


def queued(client: tenure.Client, name: str, n: int) -> None:
    wait_until(f"{n} waiter(s) on {name}", lambda: client.read(name).waiters >= n, 10.0)


def test_a_grant_carries_a_token_and_a_deadline_counted_from_its_send_time(
    client: tenure.Client,
) -> None:
    before = client.clock()
    with client.lock("grant", ttl=10.0, holder="web-1") as lease:
        after = client.clock()
        assert lease.token >= 1 and lease.holder == "web-1"
        assert before <= lease.grant.sent <= after
        assert lease.deadline == pytest.approx(lease.grant.sent + 10.0 * 0.998 - 0.1, abs=1e-6)
        assert lease.is_valid() and not lease.lost.is_set()
        lease.check()
        state = client.read("grant")
        assert (state.state, state.holder, state.token) == ("held", "web-1", lease.token)
    # Released on exit, and marked lost before the release was sent.
    assert lease.lost.is_set() and lease.lost_reason is tenure.LostReason.RELEASED
    with pytest.raises(tenure.LeaseLost):
        lease.check()
    state = client.read("grant")
    assert (state.state, state.token) == ("free", lease.token)


def test_a_second_locker_is_told_who_holds_the_lock_and_with_which_token(
    client: tenure.Client,
) -> None:
    with client.lock("conflict", ttl=10.0, holder="web-1") as lease:
        with pytest.raises(tenure.Held) as refused:
            with client.lock("conflict", holder="web-2"):
                pytest.fail("granted twice")
        assert refused.value.holder == "web-1"
        assert refused.value.token == lease.token
        assert refused.value.remaining is not None and 0 < refused.value.remaining <= 10.1
        assert not isinstance(refused.value, tenure.WaitExpired)


def test_a_waiter_gets_the_lock_as_soon_as_the_holder_releases_it(client: tenure.Client) -> None:
    first = client.lock("handover", ttl=30.0, holder="first").acquire()
    waiter = Waiter(client.lock("handover", ttl=30.0, holder="second", wait=20.0))
    waiter.start()
    queued(client, "handover", 1)
    released_at = client.clock()
    first.release()
    second = waiter.outcome(within=10.0)
    try:
        # Handed over by the release, not by the 30 s ttl running out.
        assert waiter.done_at - released_at < 5.0
        assert second.token > first.token and second.holder == "second"
        assert client.read("handover").holder == "second"
    finally:
        second.release()


def test_a_wait_that_runs_out_raises_held(client: tenure.Client) -> None:
    with client.lock("busy", ttl=30.0, holder="first") as lease:
        started = client.clock()
        with pytest.raises(tenure.Held) as refused:
            client.lock("busy", holder="second", wait=0.5).acquire()
        waited = client.clock() - started
        assert isinstance(refused.value, tenure.WaitExpired)
        assert refused.value.holder == "first" and refused.value.token == lease.token
        assert 0.5 <= waited < 3.0


def test_a_grant_after_a_long_wait_is_renewed_and_counted_from_the_renewal(
    client: tenure.Client,
) -> None:
    ttl = 1.5
    first = client.lock("late", ttl=30.0, holder="first").acquire()
    waiter = Waiter(client.lock("late", ttl=ttl, holder="second", wait=20.0))
    asked_at = client.clock()
    waiter.start()
    queued(client, "late", 1)
    # Time must pass: a wait of more than a third of the ttl.
    time.sleep(ttl / 2)
    first.release()
    second = waiter.outcome(within=10.0)
    try:
        # The poll was sent at asked_at; trusting it would leave less than
        # two thirds of a lease, so the grant was renewed before use.
        assert second.grant.sent > asked_at + ttl / 2
        assert second.deadline > asked_at + ttl
    finally:
        second.release()


def test_a_lease_is_renewed_in_the_background_past_its_ttl(client: tenure.Client) -> None:
    # Renewed every 0.5 s, lost 1.4 s after the last success: a loaded
    # 2-core machine can delay a renewal by a few hundred ms, not by 0.9 s.
    ttl = 1.5
    with client.lock("renewed", ttl=ttl) as lease:
        # Lost only if renewals stopped: waiting on it is waiting past the ttl.
        assert not lease.lost.wait(timeout=2 * ttl)
        lease.check()
        assert lease.sent > lease.grant.sent + ttl
        assert lease.deadline > lease.grant.deadline(0.1) + ttl
        assert client.read("renewed").token == lease.token


def test_a_refused_renewal_loses_the_lease_at_once(client: tenure.Client) -> None:
    lease = client.lock("refused", ttl=3.0).acquire()
    # Someone with the token ends the grant: the next renewal gets 409.
    client.release("refused", lease.holder, lease.token, key=lease.grant.key)
    lost = lease.wait_lost(timeout=3.0)
    assert lost is not None and lost.reason is tenure.LostReason.REFUSED
    # At the first renewal (ttl/3 = 1 s), long before the deadline.
    assert client.clock() < lease.deadline
    assert not lease.is_valid()


def test_a_refusal_of_input_names_the_field_to_fix(client: tenure.Client) -> None:
    with pytest.raises(tenure.Invalid) as e:
        client.lock("bad name")
    assert e.value.field == "name"
    with pytest.raises(tenure.Invalid) as e:
        client.release("x", "h", -1)  # the server's own check
    assert e.value.field == "token"


def test_a_release_of_a_grant_no_longer_current_is_refused(client: tenure.Client) -> None:
    lease = client.lock("stale", ttl=10.0, holder="h").acquire()
    newer = client.lock("stale", ttl=10.0, holder="h").acquire()  # supersedes
    try:
        assert newer.token > lease.token
        with pytest.raises(tenure.Held):
            lease.release()
        assert client.read("stale").token == newer.token
    finally:
        newer.release()


def test_a_call_gives_up_by_its_deadline_when_no_node_listens(dev: Dev) -> None:
    dead = f"http://127.0.0.1:{free_ports(1)[0]}"
    with tenure.Client([dead], call_timeout=0.5) as client:
        started = client.clock()
        with pytest.raises(tenure.Unavailable) as e:
            client.read("anything")
        assert client.clock() - started < 2.0
        assert not e.value.outcome_unknown and e.value.attempts >= 1


def test_a_watch_says_when_no_node_can_be_reached() -> None:
    with tenure.Client([f"http://127.0.0.1:{free_ports(1)[0]}"]) as client:
        states = client.watch("anything")
        try:
            first = next(states)
        finally:
            states.close()
        assert first.state == "unavailable"
        assert first.error is not None and "refused" in first.error.lower()


def test_a_grant_key_is_the_holders_alone(client: tenure.Client) -> None:
    """tenure dev gives grant keys: renewing or releasing needs the key,
    which reads never show."""
    lease = client.lock("keyed", ttl=5.0).acquire()
    try:
        assert lease.grant.key is not None and len(lease.grant.key) == 32
        assert "key" not in repr(lease.grant)
        with pytest.raises(tenure.Denied):
            client.release("keyed", lease.holder, lease.token)
        with pytest.raises(tenure.Denied):
            client.release("keyed", lease.holder, lease.token, key="0" * 32)
        assert client.read("keyed").token == lease.token
    finally:
        lease.release()
    assert client.read("keyed").holder is None


def test_an_operator_can_force_a_grant_to_end(client: tenure.Client) -> None:
    """The holder loses the lease at its next renewal; the name stays in
    its lock-delay meanwhile."""
    lease = client.lock("forced", ttl=1.0).acquire()
    client.force_release("forced", lease.token)
    assert lease.lost.wait(timeout=3.0)
    assert client.read("forced").state == "lock_delayed"
