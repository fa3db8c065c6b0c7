"""The state a lease shares with its keepalive: the current deadline, and
whether (and why) it is lost. Thread-safe; the asyncio lease uses it too,
from its one thread."""

from __future__ import annotations

import threading
from typing import Callable, Optional

from ._clock import Clock
from .errors import LeaseLost, LostReason
from .state import Grant, LeaseState


class LeaseCore:
    """Deadline and loss of one grant. A lease once lost stays lost."""

    def __init__(self, name: str, grant: Grant, margin: float, clock: Clock) -> None:
        self.name = name
        self.grant = grant
        self.margin = margin
        self.clock = clock
        #: The send time of the last successful grant or renewal.
        self.sent = grant.sent
        self.deadline = grant.deadline(margin)
        self.reason: Optional[LostReason] = None
        self.refused: Optional[LeaseState] = None
        self.cond = threading.Condition()
        #: Called (under the lock) when the lease is lost, once.
        self.on_lost: Callable[[], None] = lambda: None

    def lose(self, reason: LostReason, state: Optional[LeaseState] = None) -> None:
        with self.cond:
            if self.reason is None:  # the first reason stands
                self.reason, self.refused = reason, state
                self.on_lost()
            self.cond.notify_all()

    def expire_if_due(self) -> bool:
        """Lose the lease if its deadline has passed; whether it is lost."""
        with self.cond:
            if self.reason is None and self.clock() >= self.deadline:
                self.lose(LostReason.EXPIRED)
            return self.reason is not None

    def renewed(self, grant: Grant) -> bool:
        """Move the deadline to ``grant``'s; false (and lost) when the
        reply came after the deadline: it cannot revive the lease, since
        the holder may already have been told to stop."""
        with self.cond:
            if self.expire_if_due():
                return False
            self.sent = grant.sent
            self.deadline = max(self.deadline, grant.deadline(self.margin))
            return True

    def valid(self) -> bool:
        return self.reason is None and self.clock() < self.deadline

    def error(self) -> LeaseLost:
        return LeaseLost(self.name, self.reason or LostReason.EXPIRED, self.refused)

    def check(self) -> None:
        if not self.valid():
            self.expire_if_due()
            raise self.error()
