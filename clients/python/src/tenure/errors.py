"""What can go wrong when talking to a tenure cluster."""

from __future__ import annotations

import enum
from typing import Optional

from .state import LeaseState


class Error(Exception):
    """The base of every error this package raises."""


class Held(Error):
    """The lease rules refused the operation (``409``): someone else holds
    the name, or the grant named is no longer current. ``state`` says who
    holds what, and for how long."""

    def __init__(self, message: str, state: LeaseState) -> None:
        super().__init__(message)
        self.state = state

    @property
    def holder(self) -> Optional[str]:
        return self.state.holder

    @property
    def token(self) -> Optional[int]:
        return self.state.token

    @property
    def remaining(self) -> Optional[float]:
        """Seconds the cluster expects to go on refusing others."""
        return self.state.remaining


class WaitExpired(Held):
    """An acquire with a bounded wait: the wait ended with the name still
    held by another. A ``Held``, so one ``except Held`` covers both."""

    def __init__(self, waited: float, state: LeaseState) -> None:
        super().__init__(f"still {state} after waiting {waited:.3f} s", state)
        self.waited = waited


class Unavailable(Error):
    """No node gave an answer before the call's deadline. When
    ``outcome_unknown`` is true a write may still take effect."""

    def __init__(self, outcome_unknown: bool, attempts: int, last: str) -> None:
        super().__init__(f"no node answered in time ({last}); tried {attempts} times")
        self.outcome_unknown = outcome_unknown
        self.attempts = attempts
        self.last = last


class Invalid(Error):
    """The request was refused as malformed (a ``4xx`` other than ``401``,
    ``403`` and ``409``), or a value was out of range before anything was
    sent. ``field`` names what to fix, when one field is at fault."""

    def __init__(self, message: str, field: Optional[str] = None) -> None:
        super().__init__(f"invalid request: {message}")
        self.message = message
        self.field = field


class Denied(Error):
    """The cluster refused the credentials: ``401`` when no token was sent
    or the token is unknown, ``403`` when the token does not allow this
    request on this name. A question of configuration, not of a node: it
    is neither retried nor sent to another node. ``message`` is the
    node's reason; the token itself is never part of the error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"denied ({status}): {message}")
        self.status = status
        self.message = message


class ProtocolError(Error):
    """A node answered something this client does not understand."""

    def __init__(self, endpoint: str, message: str) -> None:
        super().__init__(f"unexpected answer from {endpoint}: {message}")
        self.endpoint = endpoint


class LostReason(str, enum.Enum):
    """Why a lease can no longer be trusted."""

    #: Its local deadline passed without a successful renewal.
    EXPIRED = "expired"
    #: A renewal was refused (``409``): the grant is gone.
    REFUSED = "refused"
    #: This process released it, or dropped it.
    RELEASED = "released"


class LeaseLost(Error):
    """The lease can no longer be trusted: stop acting as holder."""

    def __init__(self, name: str, reason: LostReason, state: Optional[LeaseState] = None) -> None:
        why = {
            LostReason.EXPIRED: "its deadline passed without a successful renewal",
            LostReason.REFUSED: f"a renewal was refused: {state}",
            LostReason.RELEASED: "it was released",
        }[reason]
        super().__init__(f"the lease on {name} was lost: {why}")
        self.reason = reason
        #: For ``REFUSED``: who holds the name now, as the refusal said.
        self.state = state
