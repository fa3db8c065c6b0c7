"""``AsyncClient``: the asyncio client, over a list of nodes."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, AsyncGenerator, Optional, Sequence, Union

import httpx

from .. import _failover, _inputs, _wire
from .._clock import Clock, boottime
from .._failover import Attempts, Retry
from .._wire import Answer, BadAnswer, Request
from ..state import Grant, LeaseState

if TYPE_CHECKING:
    from types import TracebackType

    from .election import AsyncElection
    from .lock import AsyncLock


class AsyncClient:
    """A handle on a tenure cluster for asyncio code; the same arguments and
    rules as ``tenure.Client``. Use it from one event loop; close it with
    ``await client.aclose()`` or ``async with``."""

    def __init__(
        self,
        endpoints: Union[str, Sequence[str], None] = None,
        *,
        attempt_timeout: float = _failover.DEFAULT_ATTEMPT_TIMEOUT,
        call_timeout: float = _failover.DEFAULT_CALL_TIMEOUT,
        clock: Clock = boottime,
        token: Optional[str] = None,
        ca: Optional[str] = None,
        cert: Optional[str] = None,
        key: Optional[str] = None,
    ) -> None:
        self._nodes = _failover.Nodes(_inputs.endpoints(endpoints))
        # Only in the HTTP client's headers: never an attribute, a repr or
        # a log line of this package.
        auth = _wire.auth_headers(_inputs.token(token))
        self.attempt_timeout = attempt_timeout
        self.call_timeout = call_timeout
        self.clock = clock
        self._http = httpx.AsyncClient(
            trust_env=False,
            headers=auth,
            limits=httpx.Limits(max_keepalive_connections=8),
            verify=_inputs.tls(ca, cert, key),
        )

    @property
    def endpoints(self) -> list[str]:
        return list(self._nodes.endpoints)

    @property
    def current_endpoint(self) -> str:
        """The node the next call goes to first: the last that answered."""
        return self._nodes.endpoints[self._nodes.preferred % len(self._nodes.endpoints)]

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: Optional[type[BaseException]],
        error: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.aclose()

    def lock(
        self,
        name: str,
        *,
        ttl: float = 10.0,
        wait: Optional[float] = 0.0,
        holder: Optional[str] = None,
        margin: float = 0.1,
    ) -> AsyncLock:
        """A lock on ``name``; ``async with client.lock(...) as lease:``
        takes it. ``wait`` as for ``tenure.Lock``."""
        from .lock import AsyncLock

        return AsyncLock(self, name, ttl=ttl, wait=wait, holder=holder, margin=margin)

    def election(
        self,
        name: str,
        *,
        candidate: Optional[str] = None,
        ttl: float = 10.0,
        margin: float = 0.1,
    ) -> AsyncElection:
        from .election import AsyncElection

        return AsyncElection(self, name, candidate=candidate, ttl=ttl, margin=margin)

    async def acquire_once(
        self,
        name: str,
        holder: str,
        ttl: float,
        wait: Optional[float] = None,
        give_up: Optional[float] = None,
    ) -> Union[Grant, LeaseState]:
        """As ``Client.acquire_once``."""
        request = _wire.acquire_request(name, holder, ttl, wait, self.attempt_timeout)
        until = self.clock() + max(request.attempt_timeout, self.call_timeout)
        if give_up is not None:
            until = min(until, give_up + _wire.LONG_POLL_ANSWER_GRACE)
        return _wire.acquired(await self._send(request, Retry.ALWAYS, until))

    async def renew(
        self,
        name: str,
        holder: str,
        token: int,
        until: Optional[float] = None,
        key: Optional[str] = None,
    ) -> Grant:
        """As ``Client.renew``."""
        request = _wire.renew_request(name, holder, token, key, self.attempt_timeout)
        if until is None:
            until = self.clock() + self.call_timeout
        return _wire.renewed(await self._send(request, Retry.ALWAYS, until))

    async def release(
        self, name: str, holder: str, token: int, key: Optional[str] = None
    ) -> None:
        """As ``Client.release``: retried only when certainly not applied."""
        request = _wire.release_request(name, holder, token, key, self.attempt_timeout)
        until = self.clock() + self.call_timeout
        _wire.released(await self._send(request, Retry.IF_NOT_APPLIED, until))

    async def force_release(self, name: str, token: int) -> None:
        """As ``Client.force_release``."""
        request = _wire.force_release_request(name, token, self.attempt_timeout)
        until = self.clock() + self.call_timeout
        _wire.released(await self._send(request, Retry.IF_NOT_APPLIED, until))

    async def read(self, name: str) -> LeaseState:
        """``GET /v1/locks/{name}``: a linearizable read."""
        request = _wire.read_request(name, self.attempt_timeout)
        until = self.clock() + self.call_timeout
        return _wire.read(await self._send(request, Retry.ALWAYS, until))

    def watch(self, name: str) -> AsyncGenerator[LeaseState, None]:
        """As ``Client.watch``; end it with ``aclose()``."""
        from .watch import follow

        return follow(self, _inputs.name(name))

    async def _send(self, request: Request, retry: Retry, until: float) -> Answer:
        attempts = Attempts(self._nodes, retry, until, self.clock)
        while True:
            step = attempts.next(request.attempt_timeout)
            if step is None:
                raise attempts.unavailable()
            index, endpoint, limit = step
            sent = self.clock()
            try:
                # httpx bounds each step of an attempt; this bounds the whole.
                status, body = await asyncio.wait_for(self._once(endpoint, request, limit), limit)
            except asyncio.TimeoutError:
                pause = attempts.failed(index, True, f"{endpoint}: no answer within {limit:.3f} s")
            except (httpx.HTTPError, BadAnswer) as e:
                maybe_applied, why = _failover.failure(e)
                pause = attempts.failed(index, maybe_applied, f"{endpoint}: {why}")
            else:
                if status != 503:
                    attempts.answered(index)
                    return Answer(status, body, sent, endpoint)
                unknown, why = _failover.unavailable_outcome(body)
                pause = attempts.failed(index, unknown, f"{endpoint}: {why}")
            if pause is None:
                raise attempts.unavailable()
            if pause > 0:
                await asyncio.sleep(pause)

    async def _once(self, endpoint: str, request: Request, limit: float) -> tuple[int, Any]:
        chunks: list[bytes] = []
        async with self._http.stream(
            request.method,
            endpoint + request.path,
            content=request.content(),
            headers=_wire.HEADERS,
            timeout=_failover.timeout(limit),
        ) as response:
            async for chunk in response.aiter_bytes():
                _wire.read_limited(chunks, chunk)
        return response.status_code, _wire.decode(response.status_code, b"".join(chunks))
