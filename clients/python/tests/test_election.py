"""Leader election against a real ``tenure dev`` cluster."""

from __future__ import annotations

import threading
from typing import Iterator, Optional

import pytest

import tenure
from servers import Dev, wait_until


@pytest.fixture
def client(dev: Dev) -> Iterator[tenure.Client]:
    with tenure.Client(dev.urls) as c:
        yield c


def test_resigning_hands_leadership_to_the_next_candidate_at_once(client: tenure.Client) -> None:
    ttl = 30.0  # a handover by expiry would take this long
    first = client.election("scheduler", candidate="web-1", ttl=ttl)
    second = client.election("scheduler", candidate="web-2", ttl=ttl)
    assert first.campaign() == tenure.Leader("web-1", first.token or 0)
    assert first.is_leader() and not first.lost.is_set()

    won: list[tenure.Leader] = []
    campaign = threading.Thread(target=lambda: won.append(second.campaign()), daemon=True)
    campaign.start()
    wait_until("web-2 to queue", lambda: client.read("scheduler").waiters >= 1, 10.0)
    assert not second.is_leader()

    resigned_at = client.clock()
    first.resign()
    campaign.join(timeout=10.0)
    assert won, "web-2 did not become leader"
    assert client.clock() - resigned_at < 3.0  # well within the ttl
    assert not first.is_leader() and first.lost.is_set()
    assert second.is_leader() and won[0].id == "web-2"
    assert second.leader() == won[0]
    second.resign()
    assert second.leader() is None


def test_observing_reports_the_leader_then_each_change(client: tenure.Client) -> None:
    leader = client.election("observed", candidate="web-1", ttl=30.0)
    changes = leader.observe()
    try:
        assert next(changes) is None  # nobody leads yet
        me = leader.campaign()
        seen: Optional[tenure.Leader] = next(changes)
        assert seen == me
        leader.resign()
        assert next(changes) is None
    finally:
        changes.close()
