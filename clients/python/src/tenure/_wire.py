"""What the sync and asyncio clients share besides failover: requests as
sent, and how each answer (and each watch line) is read."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional, TypeGuard

from . import _inputs
from .deadline import drift_ppm
from .errors import Denied, Error, Held, Invalid, ProtocolError
from .state import Grant, LeaseState

#: Answers are a few hundred bytes; refuse to buffer more than this.
MAX_ANSWER_BYTES = 64 * 1024
#: How long after the end of a caller's wait an acquire may still take, for
#: the answer of a long poll that ended then to arrive.
LONG_POLL_ANSWER_GRACE = 0.5
#: The longest single long poll: a longer wait is several polls, so a node
#: that dies mid-wait costs at most this much.
MAX_POLL = 30.0


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


def auth_headers(token: Optional[str]) -> dict[str, str]:
    """What every request carries (watches too) to be let in. Kept in the
    HTTP client's own headers, which httpx never shows (``[secure]``)."""
    return {} if token is None else {"authorization": f"Bearer {token}"}


#: The answers of a node that refuses the credentials (``Denied``).
DENIED = (401, 403)


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


def renew_request(
    name: str, holder: str, token: int, key: Optional[str], attempt_timeout: float
) -> Request:
    body: dict[str, object] = {"holder": _inputs.holder(holder), "token": token}
    if key is not None:
        body["key"] = key
    return Request("PUT", f"/v1/locks/{_inputs.name(name)}", body, attempt_timeout)


def release_request(
    name: str, holder: str, token: int, key: Optional[str], attempt_timeout: float
) -> Request:
    query = f"holder={_inputs.query(_inputs.holder(holder))}&token={token}"
    if key is not None:
        query += f"&key={_inputs.query(key)}"
    return Request("DELETE", f"/v1/locks/{_inputs.name(name)}?{query}", None, attempt_timeout)


def force_release_request(name: str, token: int, attempt_timeout: float) -> Request:
    path = f"/v1/locks/{_inputs.name(name)}?token={token}&force=true"
    return Request("DELETE", path, None, attempt_timeout)


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
        key=key if isinstance(key := body.get("key"), str) else None,
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
    if answer.status in DENIED:
        return denied(answer.status, body.get("error"))
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
#: A node repeats a watch's state at least every 5 s (a heartbeat), so a
#: stream silent for this long is from a node that froze or was cut off:
#: the watch reconnects (to the next node), which costs one repeated state.
WATCH_IDLE = 15.0


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


def denied(status: int, message: object) -> Denied:
    return Denied(status, message if isinstance(message, str) else f"refused with {status}")


def watch_refusal(status: int, data: bytes) -> Error:
    try:
        message = json.loads(data).get("error")
    except (ValueError, AttributeError):
        message = None
    if status in DENIED:
        return denied(status, message)
    return Invalid(message if isinstance(message, str) else f"refused with {status}", None)
