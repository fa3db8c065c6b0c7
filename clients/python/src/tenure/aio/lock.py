"""``AsyncLock`` and ``AsyncLease``: the asyncio forms of ``tenure.Lock``
and ``tenure.Lease``, with the same deadline rules (see ``tenure.lock``)."""

from __future__ import annotations

import asyncio
import random
import weakref
from typing import TYPE_CHECKING, Any, Coroutine, Optional, Union

from .. import _inputs, _wire
from .._clock import LOOK_EVERY
from .._lease_state import LeaseCore
from ..errors import Error, Held, LeaseLost, LostReason, Unavailable, WaitExpired
from ..lock import DEFAULT_MARGIN, DEFAULT_TTL, UNSET, _Unset
from ..state import Grant, LeaseState

if TYPE_CHECKING:
    from types import TracebackType

    from .client import AsyncClient

# Tasks started in the background, kept here so none is collected unfinished.
_background: set[asyncio.Task[Any]] = set()


def _spawn(work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    task = asyncio.ensure_future(work)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


class AsyncLock:
    """How to take the lock ``name`` from asyncio code: ``async with lock
    as lease:``, or ``await lock.acquire()``. Arguments as ``tenure.Lock``."""

    def __init__(
        self,
        client: AsyncClient,
        name: str,
        *,
        ttl: float = DEFAULT_TTL,
        wait: Optional[float] = 0.0,
        holder: Optional[str] = None,
        margin: float = DEFAULT_MARGIN,
    ) -> None:
        self.client = client
        self.name = _inputs.name(name)
        self.holder = _inputs.holder(holder if holder is not None else _inputs.default_holder_id())
        _inputs.ttl_ms(ttl)
        self.ttl = ttl
        self.wait = _inputs.checked_wait(wait)
        self.margin = _inputs.margin(margin)
        self._lease: Optional[AsyncLease] = None

    async def acquire(self, wait: Union[float, None, _Unset] = UNSET) -> AsyncLease:
        """Take the lock, waiting as ``wait`` says (by default the lock's)."""
        w = self.wait if isinstance(wait, _Unset) else _inputs.checked_wait(wait)
        if w == 0:
            answer = await self.client.acquire_once(self.name, self.holder, self.ttl)
            if isinstance(answer, LeaseState):
                raise Held(f"{self.name} is {answer}", answer)
            return await self._start(answer, from_long_poll=False)
        return await self._acquire_waiting(w)

    async def _acquire_waiting(self, wait: Optional[float]) -> AsyncLease:
        clock = self.client.clock
        started = clock()
        give_up = None if wait is None else started + wait
        while True:
            left = _wire.MAX_POLL if give_up is None else max(give_up - clock(), 0.0)
            poll = min(left, _wire.MAX_POLL)
            try:
                answer = await self.client.acquire_once(
                    self.name, self.holder, self.ttl, poll, give_up
                )
            except Unavailable:
                if give_up is not None and clock() >= give_up:
                    raise
                await asyncio.sleep(random.uniform(0, 1.0))
                continue
            if isinstance(answer, Grant):
                try:
                    return await self._start(answer, from_long_poll=poll > 0)
                except Held:
                    continue  # lost between the poll and the renewal: wait again
            if give_up is not None and clock() >= give_up:
                raise WaitExpired(clock() - started, answer)

    async def _start(self, grant: Grant, from_long_poll: bool) -> AsyncLease:
        """As ``Lock._start``: a long-poll grant that leaves less than two
        thirds of a fresh lease is renewed first."""
        clock = self.client.clock
        if from_long_poll and not grant.most_of_the_lease_left(clock(), self.margin):
            poll_deadline = grant.deadline(self.margin)
            try:
                grant = await self.client.renew(self.name, self.holder, grant.token, key=grant.key)
            except Held:
                raise
            except Error:
                if clock() >= poll_deadline:
                    _spawn(
                        _release_quietly(self.client, self.name, self.holder, grant.token, grant.key)
                    )
                    raise
        return AsyncLease(self.client, self.name, self.holder, grant, self.margin)

    async def __aenter__(self) -> AsyncLease:
        self._lease = await self.acquire()
        return self._lease

    async def __aexit__(
        self,
        kind: Optional[type[BaseException]],
        error: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            await lease._exit(error is not None)


class AsyncLease:
    """A held lease for asyncio code; as ``tenure.Lease``, but ``lost`` is
    an ``asyncio.Event`` and the keepalive and the deadline are tasks on
    the running loop. Create it only through ``AsyncLock``."""

    def __init__(
        self, client: AsyncClient, name: str, holder: str, grant: Grant, margin: float
    ) -> None:
        self.client = client
        self.name = name
        self.holder = holder
        self.grant = grant
        self.lost = asyncio.Event()
        core = LeaseCore(name, grant, margin, client.clock)
        core.on_lost = self.lost.set
        self._core = core
        self._released = False
        self._tasks = [
            asyncio.ensure_future(_watchdog(core)),
            asyncio.ensure_future(_keepalive(client, holder, core)),
        ]
        loop = asyncio.get_running_loop()
        self._finalizer = weakref.finalize(self, _abandon, loop, client, holder, core, self._tasks)
        self._finalizer.atexit = False  # type: ignore[misc]  # a property typeshed misses

    @property
    def token(self) -> int:
        """The fencing token of this grant."""
        return self.grant.token

    @property
    def ttl(self) -> float:
        return self.grant.ttl

    @property
    def deadline(self) -> float:
        """Act as holder only before this reading of ``client.clock``."""
        return self._core.deadline

    @property
    def sent(self) -> float:
        """When the last successful grant or renewal was sent."""
        return self._core.sent

    @property
    def lost_reason(self) -> Optional[LostReason]:
        return self._core.reason

    def remaining(self) -> float:
        return max(self._core.deadline - self.client.clock(), 0.0) if self._core.valid() else 0.0

    def is_valid(self) -> bool:
        """Whether this process may still act as holder, right now."""
        return self._core.valid()

    def check(self) -> None:
        """Raise ``LeaseLost`` unless this process may still act as holder."""
        self._core.check()

    async def wait_lost(self) -> LeaseLost:
        """Wait until the lease is lost; the error saying why."""
        await self.lost.wait()
        return self._core.error()

    async def release(self) -> None:
        """Stop acting as holder, then end the grant."""
        if self._released:
            return  # once is enough
        self._finalizer.detach()
        self._released = True
        self._core.lose(LostReason.RELEASED)
        for task in self._tasks:
            task.cancel()
        await self.client.release(self.name, self.holder, self.token, key=self.grant.key)

    async def _exit(self, failing: bool) -> None:
        """As ``Lease._exit``."""
        if self._released:
            return
        lost = self._core.error() if self._core.reason is not None else None
        if self._core.reason is LostReason.REFUSED:
            self._finalizer.detach()
            self._released = True
            for task in self._tasks:
                task.cancel()
        else:
            try:
                await self.release()
            except Error as e:
                if failing:
                    return
                if lost is not None:
                    raise lost from e
                raise
        if lost is not None and not failing:
            raise lost

    async def __aenter__(self) -> AsyncLease:
        return self

    async def __aexit__(
        self,
        kind: Optional[type[BaseException]],
        error: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self._exit(error is not None)


async def _release_quietly(
    client: AsyncClient, name: str, holder: str, token: int, key: Optional[str]
) -> None:
    try:
        await client.release(name, holder, token, key=key)
    except Exception:  # best effort (even on a closed client): the lease ends at its ttl
        pass


def _abandon(
    loop: asyncio.AbstractEventLoop,
    client: AsyncClient,
    holder: str,
    core: LeaseCore,
    tasks: list[asyncio.Task[None]],
) -> None:
    """A lease dropped unreleased: on its loop, stop and release it."""

    def stop() -> None:
        core.lose(LostReason.RELEASED)
        for task in tasks:
            task.cancel()
        _spawn(_release_quietly(client, core.name, holder, core.grant.token, core.grant.key))

    if not loop.is_closed():
        loop.call_soon_threadsafe(stop)


async def _watchdog(core: LeaseCore) -> None:
    """Sets ``lost`` at the local deadline, on the holder's clock alone."""
    while not core.expire_if_due():
        await asyncio.sleep(min(core.deadline - core.clock(), LOOK_EVERY))


async def _keepalive(client: AsyncClient, holder: str, core: LeaseCore) -> None:
    """Renew at ttl/3 after each successful renewal's send time, retrying
    (inside ``renew``) until the deadline."""
    every = core.grant.ttl / 3
    last_sent = core.sent
    while True:
        while core.reason is None and core.clock() < last_sent + every:
            await asyncio.sleep(min(last_sent + every - core.clock(), LOOK_EVERY))
        if core.expire_if_due():
            return
        deadline = core.deadline
        try:
            grant = await client.renew(
                core.name, holder, core.grant.token, until=deadline, key=core.grant.key
            )
        except Held as e:
            core.lose(LostReason.REFUSED, e.state)
            return
        except Unavailable:
            if core.clock() < deadline:
                # A call also stops at its bound on attempts, which a long
                # ttl outlasts: go on until the deadline itself.
                last_sent = core.clock() - every
                continue
            core.lose(LostReason.EXPIRED)
            return
        except Error:
            # Not about the grant (``Denied``: a token withdrawn): retry.
            last_sent = min(core.clock(), deadline)
            continue
        if not core.renewed(grant):
            return
        last_sent = grant.sent
