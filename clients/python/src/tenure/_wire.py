"""What the sync and asyncio clients share: requests, how each answer and
each failure is read, and the failover plan across nodes.

Every node serves the whole API. A call goes first to the last node that
answered, moves to the next on a refused connection, a timeout or a
``503``, and backs off (exponential, full jitter) only after a full round
of failures. It retries only where a repeat is safe (``Retry``).
"""

from __future__ import annotations

import enum
import json
import random
from dataclasses import dataclass
from typing import Any, Optional, TypeGuard

import httpx

from . import _inputs
from .deadline import drift_ppm
from .errors import Held, Invalid, ProtocolError, Unavailable
from .state import Grant, LeaseState
from ._clock import Clock

#: The server answers within its own 3 s request deadline (``503`` after);
#: an attempt gets a little more before the client gives up on that node.
DEFAULT_ATTEMPT_TIMEOUT = 4.0
#: How long one call may take, across all its attempts and nodes.
DEFAULT_CALL_TIMEOUT = 10.0
#: A node that does not accept a connection within this is treated as down.
CONNECT_TIMEOUT = 1.0
#: Answers are a few hundred bytes; refuse to buffer more than this.
MAX_ANSWER_BYTES = 64 * 1024
#: A bound on attempts per call, whatever the deadline.
MAX_ATTEMPTS = 64
BACKOFF_FIRST = 0.05
BACKOFF_MAX = 1.0
#: How long after the end of a caller's wait an acquire may still take, for
#: the answer of a long poll that ended then to arrive.
LONG_POLL_ANSWER_GRACE = 0.5
#: The longest single long poll: a longer wait is several polls, so a node
#: that dies mid-wait costs at most this much.
MAX_POLL = 30.0


class Retry(enum.Enum):
    """Which failures a call may retry, on the same node or another."""

    #: Reads, renewals (bound to a token) and acquires (a retried acquire
    #: by the same holder supersedes an unknown earlier grant): a repeat
    #: does no harm, whatever became of the first.
    ALWAYS = "always"
    #: Releases: only when the first attempt certainly did nothing (no
    #: connection, or a ``503`` saying so), so a ``409`` tells the truth.
    IF_NOT_APPLIED = "if-not-applied"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: Optional[dict[str, Any]]
    #: How long one attempt may take (longer for a long poll).
    attempt_timeout: float

    def content(self) -> Optional[bytes]:
        if self.body is None:
            return None
        return json.dumps(self.body, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    #: When the attempt that got this answer was sent, on the client's
    #: clock: where a grant's validity starts.
    sent: float
    endpoint: str


class BadAnswer(Exception):
    """An answer that arrived but cannot be read: it may have been applied."""


HEADERS = {"content-type": "application/json", "accept": "application/json"}


def timeout(limit: float) -> httpx.Timeout:
    """One attempt's bounds. httpx bounds each step, not the whole: the
    asyncio client adds an overall bound; a sync attempt may overrun by the
    connect time, which only delays a retry (deadlines are not timers)."""
    limit = max(limit, 0.001)
    return httpx.Timeout(limit, connect=min(CONNECT_TIMEOUT, limit))


def decode(status: int, data: bytes) -> Any:
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError as e:
        raise BadAnswer(f"status {status}, answer is not JSON: {e}") from None


def read_limited(chunks: list[bytes], chunk: bytes) -> None:
    chunks.append(chunk)
    if sum(len(c) for c in chunks) > MAX_ANSWER_BYTES:
        raise BadAnswer(f"answer longer than {MAX_ANSWER_BYTES} bytes")


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


# Requests.


def acquire_request(
    name: str, holder: str, ttl: float, wait: Optional[float], attempt_timeout: float
) -> Request:
    path = f"/v1/locks/{_inputs.name(name)}"
    body = {"holder": _inputs.holder(holder), "ttl_ms": _inputs.ttl_ms(ttl)}
    if wait:
        path += f"?wait={_inputs.wait_ms(wait)}ms"
        attempt_timeout += wait
    return Request("PUT", path, body, attempt_timeout)


def renew_request(name: str, holder: str, token: int, attempt_timeout: float) -> Request:
    body = {"holder": _inputs.holder(holder), "token": token}
    return Request("PUT", f"/v1/locks/{_inputs.name(name)}", body, attempt_timeout)


def release_request(name: str, holder: str, token: int, attempt_timeout: float) -> Request:
    query = f"holder={_inputs.query(_inputs.holder(holder))}&token={token}"
    return Request("DELETE", f"/v1/locks/{_inputs.name(name)}?{query}", None, attempt_timeout)


def read_request(name: str, attempt_timeout: float) -> Request:
    return Request("GET", f"/v1/locks/{_inputs.name(name)}", None, attempt_timeout)


# Reading answers.


def protocol(answer: Answer, message: str) -> ProtocolError:
    return ProtocolError(answer.endpoint, message)


def granted(answer: Answer) -> Grant:
    body = answer.body if isinstance(answer.body, dict) else {}
    token, ttl_ms, holder = body.get("token"), body.get("ttl_ms"), body.get("holder")
    if not (
        _count(token)
        and _count(ttl_ms)
        and _inputs.MIN_TTL_MS <= ttl_ms <= _inputs.MAX_TTL_MS
        and isinstance(holder, str)
    ):
        raise protocol(answer, "a grant without a valid token, ttl_ms or holder")
    return Grant(
        token=token,
        holder=holder,
        ttl_ms=ttl_ms,
        max_drift_ppm=drift_ppm(body.get("max_drift_ppm")),
        sent=answer.sent,
    )


def _count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def state(answer: Answer) -> LeaseState:
    try:
        return LeaseState.from_json(answer.body)
    except ValueError as e:
        raise protocol(answer, f"not a lease state: {e}") from None


def conflict(answer: Answer) -> Held:
    s = state(answer)
    return Held(s.error or str(s), s)


def refusal(answer: Answer) -> Exception:
    body = answer.body if isinstance(answer.body, dict) else {}
    if 400 <= answer.status < 500:
        message = body.get("error")
        field = body.get("field")
        return Invalid(
            message if isinstance(message, str) else f"refused with {answer.status}",
            field if isinstance(field, str) else None,
        )
    return protocol(answer, f"status {answer.status}")


def acquired(answer: Answer) -> Grant | LeaseState:
    """A grant for ``201``, the state for ``409``."""
    if answer.status == 201:
        return granted(answer)
    if answer.status == 409:
        return state(answer)
    raise refusal(answer)


def renewed(answer: Answer) -> Grant:
    if answer.status == 200:
        return granted(answer)
    if answer.status == 409:
        raise conflict(answer)
    raise refusal(answer)


def released(answer: Answer) -> None:
    if answer.status == 204:
        return
    if answer.status == 409:
        raise conflict(answer)
    raise refusal(answer)


def read(answer: Answer) -> LeaseState:
    if answer.status in (200, 404):
        return state(answer)
    raise refusal(answer)


# Watches.

WATCH_PATH = "/v1/locks/{}?watch=true"
#: A line longer than this is not from a tenure node.
MAX_LINE_BYTES = 64 * 1024
RECONNECT_FIRST = 0.05
RECONNECT_MAX = 2.0
#: A watch sends a line only on a change, so silence is normal; but a node
#: frozen mid-stream is silent too. After this long without a line the
#: watch reconnects (to the next node), which costs one repeated state.
WATCH_IDLE = 30.0


class Lines:
    """Splits a byte stream into the lease states of its lines."""

    def __init__(self) -> None:
        self.pending = b""

    def feed(self, data: bytes) -> list[LeaseState]:
        self.pending += data
        *lines, self.pending = self.pending.split(b"\n")
        if len(self.pending) > MAX_LINE_BYTES:
            raise BadAnswer(f"a watch line longer than {MAX_LINE_BYTES} bytes")
        out = []
        for line in lines:
            try:
                out.append(LeaseState.from_json(json.loads(line)))
            except ValueError:
                continue  # not a state: skipped, as the Rust client does
        return out


def watch_refusal(status: int, data: bytes) -> Invalid:
    try:
        message = json.loads(data).get("error")
    except (ValueError, AttributeError):
        message = None
    return Invalid(message if isinstance(message, str) else f"refused with {status}", None)
