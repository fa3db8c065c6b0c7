"""The asyncio API: ``AsyncClient``, ``AsyncLock``, ``AsyncLease``,
``AsyncElection``. Same rules as the blocking API; the keepalive and the
lost signal are tasks on the running event loop."""

from .client import AsyncClient
from .election import AsyncElection
from .lock import AsyncLease, AsyncLock

__all__ = ["AsyncClient", "AsyncElection", "AsyncLease", "AsyncLock"]
