"""``Election``: campaign for a named lease, observe who leads, resign.

The leader is the holder of the lease ``name``; its token is the
leadership's fencing token. There is no other state: ``leader()`` is a
linearizable read, ``observe()`` follows the watch stream.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Generator, Optional

from . import _inputs
from .errors import LeaseLost, LostReason
from .lock import DEFAULT_MARGIN, DEFAULT_TTL, Lease, Lock
from .state import Leader, LeaseState

if TYPE_CHECKING:
    from .client import Client


class Election:
    """A leader election among candidates of one name. ``candidate`` is
    this process's id (by default ``{hostname}:{pid}:{random}``), unique
    among the candidates. ``ttl``: how long leadership outlives a leader
    that dies without resigning."""

    def __init__(
        self,
        client: Client,
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
        self._lease: Optional[Lease] = None
        self._guard = threading.Lock()

    def campaign(self, wait: Optional[float] = None) -> Leader:
        """Block until this candidate leads (a long-poll acquire, renewed
        before it returns if the wait was long); ``WaitExpired`` if
        ``wait`` seconds pass first."""
        lease = Lock(
            self.client, self.name, ttl=self.ttl, holder=self.candidate, margin=self.margin
        ).acquire(wait=wait)
        with self._guard:
            old, self._lease = self._lease, lease
        if old is not None:
            old._finalizer.detach()  # superseded by the new grant: nothing to release
            old._core.lose(LostReason.RELEASED)
        return Leader(id=self.candidate, token=lease.token)

    @property
    def lease(self) -> Optional[Lease]:
        """The lease while this process leads (or last led)."""
        return self._lease

    def is_leader(self) -> bool:
        """Whether this process leads right now, by its own deadline."""
        lease = self._lease
        return lease is not None and lease.is_valid()

    @property
    def token(self) -> Optional[int]:
        """The leadership's fencing token, while this process leads."""
        lease = self._lease
        return lease.token if lease is not None and lease.is_valid() else None

    @property
    def lost(self) -> threading.Event:
        """Set when this process's leadership ends (already set if it does
        not lead). Computed locally, like ``Lease.lost``."""
        lease = self._lease
        if lease is not None:
            return lease.lost
        done = threading.Event()
        done.set()
        return done

    def check(self) -> None:
        """Raise ``LeaseLost`` unless this process leads right now."""
        lease = self._lease
        if lease is None:
            raise LeaseLost(self.name, LostReason.RELEASED)
        lease.check()

    def leader(self) -> Optional[Leader]:
        """Who leads, by a linearizable read; ``None`` when nobody does."""
        return self.client.read(self.name).leader()

    def observe(self) -> Generator[Optional[Leader], None, None]:
        """The current leader at once, then each change (``None``: nobody
        leads; a handover by resignation may show it in between).
        Reconnects across nodes by itself; a node's "unavailable" is not a
        change. Close the iterator to stop."""
        return _changes(self.client.watch(self.name))

    def resign(self) -> None:
        """Stop leading, and free the name at once for the next candidate."""
        with self._guard:
            lease, self._lease = self._lease, None
        if lease is not None:
            lease.release()


def _changes(
    states: Generator[LeaseState, None, None],
) -> Generator[Optional[Leader], None, None]:
    last: list[Optional[Leader]] = []
    try:
        for state in states:
            if state.state == "unavailable":
                continue
            leader = state.leader()
            if not last or last[0] != leader:
                last[:] = [leader]
                yield leader
    finally:
        states.close()
