"""What a holder sees when nodes die or freeze: three real ``tenure
server`` processes, killed (SIGKILL) or frozen (SIGSTOP) mid-lease."""

from __future__ import annotations

import pytest

import tenure
from servers import Cluster


def test_a_lease_keeps_renewing_through_another_node_when_its_node_is_killed(
    cluster: Cluster,
) -> None:
    ttl = 2.0
    with tenure.Client(cluster.urls) as client:
        with client.lock("survivor", ttl=ttl) as lease:
            victim = client.current_endpoint  # the node the client talks to
            killed_at = client.clock()
            cluster.kill(cluster.index(victim))
            # Twice the ttl: only renewals through another node keep it.
            assert not lease.lost.wait(timeout=2 * ttl)
            lease.check()
            assert lease.sent > killed_at  # renewed since the kill...
            assert lease.deadline > killed_at + ttl  # ...past the old ttl
            assert client.current_endpoint != victim
            state = client.read("survivor")
            assert (state.holder, state.token) == (lease.holder, lease.token)
        assert client.read("survivor").state == "free"


def test_lost_is_set_on_the_holders_clock_before_a_frozen_cluster_could_expire_the_lease(
    cluster: Cluster,
) -> None:
    ttl, margin = 3.0, 0.25
    with tenure.Client(cluster.urls, attempt_timeout=1.0, call_timeout=2.0) as client:
        lease = client.lock("frozen", ttl=ttl, margin=margin).acquire()
        for i in range(3):
            cluster.freeze(i)  # the fixture continues and stops them
        assert lease.lost.wait(timeout=ttl + 2.0), "lost was never set"
        lost_at = client.clock()
        # No renewal got through: the grant's own send time is the origin.
        assert lease.sent == lease.grant.sent
        # One clock: lost no earlier than the holder's deadline, and before
        # sent + ttl, which is before the cluster's expiry.
        assert lease.deadline <= lost_at < lease.grant.sent + ttl
        assert lease.lost_reason is tenure.LostReason.EXPIRED
        with pytest.raises(tenure.LeaseLost):
            lease.check()


def test_check_raises_before_the_cluster_expires_a_lease_whose_node_stops_answering(
    cluster: Cluster,
) -> None:
    ttl, margin = 2.0, 0.5
    with tenure.Client(cluster.urls[:1], attempt_timeout=0.5) as client:
        lease = client.lock("silent", ttl=ttl, margin=margin).acquire()
        cluster.freeze(0)  # the only node this holder knows
        # A holder checks before each action (here: every 10 ms).
        give_up = lease.grant.sent + ttl + 5.0
        while client.clock() < give_up:
            try:
                lease.check()
            except tenure.LeaseLost as e:
                assert e.reason is tenure.LostReason.EXPIRED
                break
            lease.lost.wait(timeout=0.01)
        else:
            pytest.fail("check() never raised")
        stopped_at = client.clock()
    assert stopped_at < lease.sent + ttl
    with tenure.Client(cluster.urls[1:]) as others:
        # The two live nodes still count the lease as held...
        state = others.read("silent")
        assert (state.state, state.holder, state.token) == ("held", lease.holder, lease.token)
        # ...and hand it to another only after the holder had stopped.
        with others.lock("silent", holder="next", ttl=ttl, wait=2 * ttl) as taken:
            assert taken.token > lease.token
            assert taken.grant.sent >= stopped_at
            assert others.clock() > lease.sent + ttl


def test_observing_goes_on_through_another_node_when_the_watched_node_is_killed(
    cluster: Cluster,
) -> None:
    with tenure.Client(cluster.urls) as client:
        election = client.election("watched", candidate="web-1", ttl=30.0)
        changes = election.observe()
        try:
            assert next(changes) is None
            watched = client.current_endpoint  # the watch started there
            cluster.kill(cluster.index(watched))
            me = election.campaign()
            assert next(changes) == me  # reported by another node
            election.resign()
        finally:
            changes.close()
