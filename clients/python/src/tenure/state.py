"""What the cluster reports: lease states, grants and leaders."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from .deadline import holder_deadline, most_of_the_lease_left

_STATES = ("held", "lock_delayed", "free", "unavailable")


def _int(body: dict[str, Any], key: str, required: bool) -> Optional[int]:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{key} is {value!r}, not a count")
    return value


@dataclass(frozen=True)
class LeaseState:
    """Who holds a name, as one node saw it at one moment.

    ``remaining_ms`` is on the answering node's clock: fine for people and
    for choosing when to try again, never for deciding that the caller
    itself holds anything (its own deadline decides that).
    """

    #: ``"held"``, ``"lock_delayed"`` (expired without a release: only
    #: ``holder`` may take it for ``remaining_ms``), ``"free"``, or, in a
    #: watch, ``"unavailable"`` (the node could not reach a quorum).
    state: str
    #: The current grant's token; for a free name the last one granted.
    token: Optional[int] = None
    holder: Optional[str] = None
    remaining_ms: Optional[int] = None
    ttl_ms: Optional[int] = None
    #: Long polls queued for the name: the first gets it next.
    waiters: int = 0
    #: The node's explanation (a refusal, or why it is unavailable).
    error: Optional[str] = None

    @classmethod
    def from_json(cls, body: object) -> LeaseState:
        """Parse a read, a ``409`` body or a watch line; ``ValueError`` if
        it is none of those."""
        if not isinstance(body, dict):
            raise ValueError(f"not a JSON object: {body!r}")
        state = body.get("state")
        if state not in _STATES:
            raise ValueError(f"unknown state {state!r}")
        error = body.get("error")
        error = error if isinstance(error, str) else None
        if state == "unavailable":
            return cls(state="unavailable", error=error or "unavailable")
        holder = body.get("holder")
        if state != "free" and not isinstance(holder, str):
            raise ValueError(f"a {state} state without a holder")
        return cls(
            state=str(state),
            token=_int(body, "token", required=True),
            holder=holder if isinstance(holder, str) else None,
            remaining_ms=_int(body, "remaining_ms", required=state != "free"),
            ttl_ms=_int(body, "ttl_ms", required=False),
            waiters=_int(body, "waiters", required=False) or 0,
            error=error,
        )

    @property
    def held(self) -> bool:
        return self.state == "held"

    @property
    def remaining(self) -> Optional[float]:
        """Seconds the answering node expects to go on refusing others."""
        return None if self.remaining_ms is None else self.remaining_ms / 1000

    def leader(self) -> Optional[Leader]:
        """The leader this state shows; ``None`` when nobody holds it."""
        if self.state == "held" and self.holder is not None and self.token is not None:
            return Leader(id=self.holder, token=self.token)
        return None

    def __str__(self) -> str:
        queued = f", {self.waiters} waiting" if self.waiters else ""
        if self.state == "held":
            return (
                f"held by {self.holder} with token {self.token}, for "
                f"{self.remaining_ms} ms more as the cluster counts{queued}"
            )
        if self.state == "lock_delayed":
            return (
                f"expired (token {self.token} of {self.holder}), in its "
                f"lock-delay for {self.remaining_ms} ms{queued}"
            )
        if self.state == "free":
            return f"free (last token {self.token})"
        return f"unavailable: {self.error}"


@dataclass(frozen=True)
class Leader:
    """The current leader of an election: the holder of its lease, and the
    leadership's fencing token."""

    id: str
    token: int


@dataclass(frozen=True)
class Grant:
    """A grant or renewal: its token and ttl, and when the request that won
    it was sent, on the client's clock (where its validity starts)."""

    token: int
    holder: str
    #: The grant's effective ttl (at least what was asked for).
    ttl_ms: int
    #: The cluster's drift bound ρ in parts per million.
    max_drift_ppm: int
    #: When the winning request was sent, on the client's clock.
    sent: float
    #: The grant's secret key, from a cluster started with
    #: ``--grant-secret``: renewing or releasing the grant needs it, and only
    #: the holder ever sees it. Not shown by ``repr``.
    key: Optional[str] = field(default=None, repr=False)

    @property
    def ttl(self) -> float:
        return self.ttl_ms / 1000

    def deadline(self, margin: float) -> float:
        """The last instant this process may act as holder, keeping
        ``margin`` seconds to stop: ``sent + ttl·(1−2ρ) − margin``."""
        return holder_deadline(self.sent, self.ttl_ms, self.max_drift_ppm, margin)

    def most_of_the_lease_left(self, now: float, margin: float) -> bool:
        return most_of_the_lease_left(self.sent, now, self.ttl_ms, self.max_drift_ppm, margin)
