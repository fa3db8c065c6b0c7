"""The Python client of tenure: leases with fencing tokens and leader
election over the HTTP API of a tenure cluster.

    import tenure
    client = tenure.Client(["http://10.0.0.1:7400", "http://10.0.0.2:7400"])
    with client.lock("nightly-report", ttl=10.0, wait=30.0) as lease:
        lease.check()                      # before each action
        write(report, fencing_token=lease.token)

A holder acts only until ``sent + ttl·(1−2ρ) − margin`` on its own clock,
counted from when it SENT the request that won or last renewed its grant;
the client computes that deadline itself and never asks the cluster.
"""

from ._clock import LOOK_EVERY, boottime
from ._inputs import DEV_ENDPOINTS, default_holder_id
from .aio import AsyncClient, AsyncElection, AsyncLease, AsyncLock
from .client import Client
from .deadline import holder_deadline, most_of_the_lease_left
from .election import Election
from .errors import (
    Denied,
    Error,
    Held,
    Invalid,
    LeaseLost,
    LostReason,
    ProtocolError,
    Unavailable,
    WaitExpired,
)
from .lock import DEFAULT_MARGIN, DEFAULT_TTL, Lease, Lock
from .state import Grant, Leader, LeaseState

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MARGIN",
    "DEFAULT_TTL",
    "DEV_ENDPOINTS",
    "LOOK_EVERY",
    "AsyncClient",
    "AsyncElection",
    "AsyncLease",
    "AsyncLock",
    "Client",
    "Denied",
    "Election",
    "Error",
    "Grant",
    "Held",
    "Invalid",
    "Leader",
    "Lease",
    "LeaseLost",
    "LeaseState",
    "Lock",
    "LostReason",
    "ProtocolError",
    "Unavailable",
    "WaitExpired",
    "boottime",
    "default_holder_id",
    "holder_deadline",
    "most_of_the_lease_left",
]
