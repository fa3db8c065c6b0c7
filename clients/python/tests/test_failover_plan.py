"""The failover plan's rules, on their own (the scenarios run against real
servers elsewhere): which node next, when to pause, when to stop."""

from __future__ import annotations

from tenure._failover import Attempts, Nodes, Retry, unavailable_outcome


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def plan(retry: Retry, until: float = 10.0) -> tuple[Nodes, Attempts]:
    nodes = Nodes(["http://a:1", "http://b:2", "http://c:3"])
    return nodes, Attempts(nodes, retry, until, FakeClock())


def test_a_call_starts_with_the_last_node_that_answered_and_sticks_to_it() -> None:
    nodes, attempts = plan(Retry.ALWAYS)
    nodes.preferred = 1
    attempts = Attempts(nodes, Retry.ALWAYS, 10.0, FakeClock())
    step = attempts.next(4.0)
    assert step is not None and step[1] == "http://b:2"
    attempts.answered(step[0])
    assert nodes.preferred == 1


def test_a_failed_node_is_left_for_the_next_and_a_pause_comes_only_after_a_full_round() -> None:
    nodes, attempts = plan(Retry.ALWAYS)
    pauses = []
    for expected in ("http://a:1", "http://b:2", "http://c:3", "http://a:1"):
        step = attempts.next(4.0)
        assert step is not None and step[1] == expected
        pauses.append(attempts.failed(step[0], True, "down"))
        assert nodes.preferred == (step[0] + 1) % 3
    assert pauses[:2] == [0.0, 0.0]
    assert pauses[2] is not None and 0.0 <= pauses[2] <= 0.05  # full jitter
    assert attempts.unavailable().outcome_unknown


def test_a_release_that_may_have_been_applied_is_not_retried() -> None:
    _, attempts = plan(Retry.IF_NOT_APPLIED)
    step = attempts.next(4.0)
    assert step is not None
    assert attempts.failed(step[0], True, "timeout") is None
    assert attempts.unavailable().outcome_unknown


def test_a_release_that_certainly_did_nothing_is_retried_on_another_node() -> None:
    _, attempts = plan(Retry.IF_NOT_APPLIED)
    step = attempts.next(4.0)
    assert step is not None
    assert attempts.failed(step[0], False, "refused") == 0.0
    again = attempts.next(4.0)
    assert again is not None and again[1] == "http://b:2"
    assert not attempts.unavailable().outcome_unknown


def test_no_attempt_starts_after_the_deadline_and_none_may_outlast_it() -> None:
    nodes = Nodes(["http://a:1"])
    clock = FakeClock()
    attempts = Attempts(nodes, Retry.ALWAYS, 1.0, clock)
    clock.now = 0.75
    step = attempts.next(4.0)
    assert step is not None and step[2] == 0.25
    clock.now = 1.0
    assert attempts.next(4.0) is None


def test_a_503_says_whether_its_outcome_is_unknown_and_is_unknown_when_silent() -> None:
    assert unavailable_outcome({"error": "overloaded", "outcome_unknown": False})[0] is False
    assert unavailable_outcome({"error": "no quorum", "outcome_unknown": True})[0] is True
    assert unavailable_outcome({"error": "?"})[0] is True
    assert unavailable_outcome(None)[0] is True
