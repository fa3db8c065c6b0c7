"""The asyncio API against a real ``tenure dev`` cluster."""

from __future__ import annotations

import asyncio

import pytest

import tenure
from servers import Dev, free_ports


def test_an_async_grant_carries_a_token_and_a_conflict_names_the_holder(dev: Dev) -> None:
    async def scenario() -> None:
        async with tenure.AsyncClient(dev.urls) as client:
            async with client.lock("async-grant", ttl=10.0, holder="a-1") as lease:
                assert lease.token >= 1 and lease.is_valid()
                with pytest.raises(tenure.Held) as refused:
                    await client.lock("async-grant", holder="a-2").acquire()
                assert (refused.value.holder, refused.value.token) == ("a-1", lease.token)
                state = await client.read("async-grant")
                assert (state.holder, state.token) == ("a-1", lease.token)
            assert lease.lost.is_set() and lease.lost_reason is tenure.LostReason.RELEASED
            assert (await client.read("async-grant")).state == "free"

    asyncio.run(scenario())


def test_an_async_lease_is_renewed_and_a_waiter_gets_it_on_release(dev: Dev) -> None:
    async def scenario() -> None:
        async with tenure.AsyncClient(dev.urls) as client:
            first = await client.lock("async-wait", ttl=1.5, holder="first").acquire()
            second = asyncio.ensure_future(
                client.lock("async-wait", ttl=10.0, holder="second", wait=10.0).acquire()
            )
            # Past the ttl, renewed in the background while the other waits.
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(first.lost.wait(), timeout=3.0)
            first.check()
            await first.release()
            lease = await asyncio.wait_for(second, timeout=5.0)
            assert lease.token > first.token
            await lease.release()

    asyncio.run(scenario())


def test_async_lost_is_set_on_the_holders_clock_when_the_cluster_freezes(fresh_dev: Dev) -> None:
    ttl, margin = 2.0, 0.25

    async def scenario() -> None:
        async with tenure.AsyncClient(fresh_dev.urls, attempt_timeout=1.0) as client:
            lease = await client.lock("async-frozen", ttl=ttl, margin=margin).acquire()
            fresh_dev.freeze()  # all three nodes; the fixture stops them
            await asyncio.wait_for(lease.lost.wait(), timeout=ttl + 2.0)
            lost_at = client.clock()
            assert lease.sent == lease.grant.sent
            assert lease.deadline <= lost_at < lease.grant.sent + ttl
            assert lease.lost_reason is tenure.LostReason.EXPIRED
            with pytest.raises(tenure.LeaseLost):
                lease.check()
            await asyncio.sleep(0)  # let the cancelled keepalive finish

    asyncio.run(scenario())


def test_async_resign_hands_over_at_once(dev: Dev) -> None:
    async def scenario() -> None:
        async with tenure.AsyncClient(dev.urls) as client:
            first = client.election("async-elect", candidate="one", ttl=30.0)
            second = client.election("async-elect", candidate="two", ttl=30.0)
            await first.campaign()
            changes = first.observe()
            assert (await changes.__anext__()) == tenure.Leader("one", first.token or 0)
            campaign = asyncio.ensure_future(second.campaign())
            while (await client.read("async-elect")).waiters < 1:
                await asyncio.sleep(0.02)  # nothing announces a queued waiter
            resigned_at = client.clock()
            await first.resign()
            leader = await asyncio.wait_for(campaign, timeout=5.0)
            assert client.clock() - resigned_at < 3.0
            assert leader.id == "two" and second.is_leader() and first.lost.is_set()
            seen = await changes.__anext__()
            if seen is None:  # a handover may show nobody in between
                seen = await changes.__anext__()
            assert seen == leader
            await changes.aclose()
            await second.resign()

    asyncio.run(scenario())


def test_an_async_watch_says_when_no_node_can_be_reached() -> None:
    async def scenario() -> None:
        async with tenure.AsyncClient([f"http://127.0.0.1:{free_ports(1)[0]}"]) as client:
            states = client.watch("anything")
            first = await asyncio.wait_for(states.__anext__(), timeout=5.0)
            await states.aclose()
            assert first.state == "unavailable"
            assert first.error is not None and "connect" in first.error.lower()

    asyncio.run(scenario())
