"""The failover plan across nodes, shared by the sync and asyncio clients.

Every node serves the whole API. A call goes first to the last node that
answered, moves to the next on a refused connection, a timeout or a
``503``, and backs off (exponential, full jitter) only after a full round
of failures. It retries only where a repeat is safe (``Retry``).
"""

from __future__ import annotations

import enum
import random
from typing import Any, Optional

import httpx

from ._clock import Clock
from .errors import Unavailable

#: The server answers within its own 3 s request deadline (``503`` after);
#: an attempt gets a little more before the client gives up on that node.
DEFAULT_ATTEMPT_TIMEOUT = 4.0
#: How long one call may take, across all its attempts and nodes.
DEFAULT_CALL_TIMEOUT = 10.0
#: A node that does not accept a connection within this is treated as down.
CONNECT_TIMEOUT = 1.0
#: A bound on attempts per call, whatever the deadline.
MAX_ATTEMPTS = 64
BACKOFF_FIRST = 0.05
BACKOFF_MAX = 1.0


class Retry(enum.Enum):
    """Which failures a call may retry, on the same node or another."""

    #: Reads, renewals (bound to a token) and acquires (a retried acquire
    #: by the same holder supersedes an unknown earlier grant): a repeat
    #: does no harm, whatever became of the first.
    ALWAYS = "always"
    #: Releases: only when the first attempt certainly did nothing (no
    #: connection, or a ``503`` saying so), so a ``409`` tells the truth.
    IF_NOT_APPLIED = "if-not-applied"


def timeout(limit: float) -> httpx.Timeout:
    """One attempt's bounds. httpx bounds each step, not the whole: the
    asyncio client adds an overall bound; a sync attempt may overrun by the
    connect time, which only delays a retry (deadlines are not timers)."""
    limit = max(limit, 0.001)
    return httpx.Timeout(limit, connect=min(CONNECT_TIMEOUT, limit))


def failure(error: Exception) -> tuple[bool, str]:
    """Whether a failed attempt may have been applied, and why it failed."""
    if isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
        # No connection: the request never left.
        return False, f"cannot connect: {error}"
    if isinstance(error, httpx.TimeoutException):
        return True, f"no answer in time ({type(error).__name__})"
    if isinstance(error, httpx.UnsupportedProtocol):
        return False, str(error)
    return True, f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


class Nodes:
    """The endpoints, and the one to try first: the last that answered."""

    def __init__(self, endpoints: list[str]) -> None:
        self.endpoints = endpoints
        self.preferred = 0


class Attempts:
    """The failover plan of one call: which node next, how long for, and
    when to pause or stop. Used by both clients, which do the sending."""

    def __init__(self, nodes: Nodes, retry: Retry, until: float, clock: Clock) -> None:
        self.nodes = nodes
        self.retry = retry
        self.until = until
        self.clock = clock
        self.first = nodes.preferred % len(nodes.endpoints)
        self.attempts = 0
        self.backoff = BACKOFF_FIRST
        self.outcome_unknown = False
        self.last = "no attempt made before the deadline"

    def next(self, attempt_timeout: float) -> Optional[tuple[int, str, float]]:
        """The next attempt (node index, endpoint, time it may take), or
        ``None`` when the call must end."""
        now = self.clock()
        if self.attempts >= MAX_ATTEMPTS or now >= self.until:
            return None
        index = (self.first + self.attempts) % len(self.nodes.endpoints)
        self.attempts += 1
        return index, self.nodes.endpoints[index], min(attempt_timeout, self.until - now)

    def answered(self, index: int) -> None:
        self.nodes.preferred = index

    def failed(self, index: int, maybe_applied: bool, why: str) -> Optional[float]:
        """Record a failure; the pause before the next attempt, or ``None``
        when a retry would not be safe."""
        self.last = why
        self.outcome_unknown |= maybe_applied
        # The next call starts with the next node, not this failing one.
        self.nodes.preferred = (index + 1) % len(self.nodes.endpoints)
        if maybe_applied and self.retry is Retry.IF_NOT_APPLIED:
            return None
        if self.attempts % len(self.nodes.endpoints) != 0:
            return 0.0
        # Full jitter: clients that failed together do not retry together.
        pause = min(random.uniform(0, self.backoff), max(self.until - self.clock(), 0.0))
        self.backoff = min(self.backoff * 2, BACKOFF_MAX)
        return pause

    def unavailable(self) -> Unavailable:
        return Unavailable(self.outcome_unknown, self.attempts, self.last)


def unavailable_outcome(body: Any) -> tuple[bool, str]:
    """A ``503``'s ``outcome_unknown`` (true when it does not say) and reason."""
    if not isinstance(body, dict):
        return True, "503"
    unknown = body.get("outcome_unknown")
    return unknown if isinstance(unknown, bool) else True, f"503 {body.get('error', 'unavailable')}"
