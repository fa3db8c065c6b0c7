"""``AsyncElection``: the asyncio form of ``tenure.Election``."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, AsyncGenerator, Optional

from .. import _inputs
from ..errors import LeaseLost, LostReason
from ..lock import DEFAULT_MARGIN, DEFAULT_TTL
from ..state import Leader, LeaseState
from .lock import AsyncLease, AsyncLock

if TYPE_CHECKING:
    from .client import AsyncClient


class AsyncElection:
    """A leader election among candidates of one name; see
    ``tenure.Election``."""

    def __init__(
        self,
        client: AsyncClient,
        name: str,
        *,
        candidate: Optional[str] = None,
        ttl: float = DEFAULT_TTL,
        margin: float = DEFAULT_MARGIN,
    ) -> None:
        self.client = client
        self.name = _inputs.name(name)
        self.candidate = _inputs.holder(
            candidate if candidate is not None else _inputs.default_holder_id()
        )
        self.ttl = ttl
        self.margin = margin
        self._lease: Optional[AsyncLease] = None

    async def campaign(self, wait: Optional[float] = None) -> Leader:
        """Wait until this candidate leads; ``WaitExpired`` after ``wait``."""
        lease = await AsyncLock(
            self.client, self.name, ttl=self.ttl, holder=self.candidate, margin=self.margin
        ).acquire(wait=wait)
        old, self._lease = self._lease, lease
        if old is not None:  # superseded by the new grant: nothing to release
            old._finalizer.detach()
            old._core.lose(LostReason.RELEASED)
            for task in old._tasks:
                task.cancel()
        return Leader(id=self.candidate, token=lease.token)

    @property
    def lease(self) -> Optional[AsyncLease]:
        return self._lease

    def is_leader(self) -> bool:
        return self._lease is not None and self._lease.is_valid()

    @property
    def token(self) -> Optional[int]:
        lease = self._lease
        return lease.token if lease is not None and lease.is_valid() else None

    @property
    def lost(self) -> asyncio.Event:
        """Set when this process's leadership ends (set already if it does
        not lead)."""
        if self._lease is not None:
            return self._lease.lost
        done = asyncio.Event()
        done.set()
        return done

    def check(self) -> None:
        if self._lease is None:
            raise LeaseLost(self.name, LostReason.RELEASED)
        self._lease.check()

    async def leader(self) -> Optional[Leader]:
        return (await self.client.read(self.name)).leader()

    def observe(self) -> AsyncGenerator[Optional[Leader], None]:
        """As ``Election.observe``; end it with ``aclose()``."""
        return _changes(self.client.watch(self.name))

    async def resign(self) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            await lease.release()


async def _changes(
    states: AsyncGenerator[LeaseState, None],
) -> AsyncGenerator[Optional[Leader], None]:
    last: list[Optional[Leader]] = []
    try:
        async for state in states:
            if state.state == "unavailable":
                continue
            leader = state.leader()
            if not last or last[0] != leader:
                last[:] = [leader]
                yield leader
    finally:
        await states.aclose()
