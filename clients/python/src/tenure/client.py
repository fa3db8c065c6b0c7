"""``Client``: the blocking client, over a list of nodes."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Generator, Optional, Sequence, Union

import httpx

from . import _failover, _inputs, _wire
from ._clock import Clock, boottime
from ._failover import Attempts, Retry
from ._wire import Answer, BadAnswer, Request
from .state import Grant, LeaseState

if TYPE_CHECKING:
    from types import TracebackType

    from .election import Election
    from .lock import Lock


class Client:
    """A handle on a tenure cluster, safe to share between threads.

    ``endpoints``: ``http://host:port`` URLs, a list or one comma-separated
    string; by default ``TENURE_ENDPOINTS``, else the ``tenure dev`` ports
    7400 to 7402. ``attempt_timeout``: the most one request to one node may
    take. ``call_timeout``: the most one call may take across retries and
    nodes. ``clock``: where send times and deadlines are read (by default
    ``CLOCK_BOOTTIME``); another is for a program's own tests.
    ``token``: the bearer token sent with every request, watches included,
    to a cluster that requires one; by default the contents (stripped) of
    the file ``TENURE_TOKEN_FILE`` names, else none. A refusal of it
    raises ``Denied``. ``ca``: the CA file (PEM) that signs the nodes'
    certificates, for ``https://`` endpoints; by default ``TENURE_CA``,
    else the system's CAs. ``cert`` and ``key``: a client certificate and
    its key, for a cluster started with ``--client-ca``; by default
    ``TENURE_CERT`` and ``TENURE_KEY``.
    """

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
        # No proxies from the environment: the nodes are reached directly.
        self._http = httpx.Client(
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

    def close(self) -> None:
        """Close the connections. Leases still held are left to expire."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: Optional[type[BaseException]],
        error: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    # The high-level API.

    def lock(
        self,
        name: str,
        *,
        ttl: float = 10.0,
        wait: Optional[float] = 0.0,
        holder: Optional[str] = None,
        margin: float = 0.1,
    ) -> Lock:
        """A lock on ``name``; ``with client.lock(...) as lease:`` takes it.
        See ``Lock`` for ``wait`` (0: take it now or raise ``Held``; None:
        wait as long as it takes)."""
        from .lock import Lock

        return Lock(self, name, ttl=ttl, wait=wait, holder=holder, margin=margin)

    def election(
        self,
        name: str,
        *,
        candidate: Optional[str] = None,
        ttl: float = 10.0,
        margin: float = 0.1,
    ) -> Election:
        """A leader election over the lease ``name``."""
        from .election import Election

        return Election(self, name, candidate=candidate, ttl=ttl, margin=margin)

    # One call each: the HTTP API.

    def acquire_once(
        self,
        name: str,
        holder: str,
        ttl: float,
        wait: Optional[float] = None,
        give_up: Optional[float] = None,
    ) -> Union[Grant, LeaseState]:
        """``PUT /v1/locks/{name}``: one acquire, or a long poll of up to
        ``wait`` seconds. A ``Grant``, or the ``LeaseState`` of a ``409``.
        Retries end by ``give_up`` (a reading of ``clock``) when given."""
        request = _wire.acquire_request(name, holder, ttl, wait, self.attempt_timeout)
        until = self.clock() + max(request.attempt_timeout, self.call_timeout)
        if give_up is not None:
            until = min(until, give_up + _wire.LONG_POLL_ANSWER_GRACE)
        return _wire.acquired(self._send(request, Retry.ALWAYS, until))

    def renew(
        self,
        name: str,
        holder: str,
        token: int,
        until: Optional[float] = None,
        key: Optional[str] = None,
    ) -> Grant:
        """Renew grant ``token``, retrying until ``until`` (a reading of
        ``clock``; by default the call timeout). ``Held`` if it is gone."""
        request = _wire.renew_request(name, holder, token, key, self.attempt_timeout)
        if until is None:
            until = self.clock() + self.call_timeout
        return _wire.renewed(self._send(request, Retry.ALWAYS, until))

    def release(
        self, name: str, holder: str, token: int, key: Optional[str] = None
    ) -> None:
        """``DELETE``: end grant ``token`` of ``holder``. Retried only when
        the first attempt certainly did nothing."""
        request = _wire.release_request(name, holder, token, key, self.attempt_timeout)
        until = self.clock() + self.call_timeout
        _wire.released(self._send(request, Retry.IF_NOT_APPLIED, until))

    def force_release(self, name: str, token: int) -> None:
        """End grant ``token`` whoever holds it, as an operator (an ``admin``
        token where the cluster checks tokens). The name stays in its
        lock-delay for the grant's ttl and lock-delay, so the forced-out
        holder has stopped before anyone else holds it."""
        request = _wire.force_release_request(name, token, self.attempt_timeout)
        until = self.clock() + self.call_timeout
        _wire.released(self._send(request, Retry.IF_NOT_APPLIED, until))

    def read(self, name: str) -> LeaseState:
        """``GET /v1/locks/{name}``: a linearizable read."""
        request = _wire.read_request(name, self.attempt_timeout)
        return _wire.read(self._send(request, Retry.ALWAYS, self.clock() + self.call_timeout))

    def watch(self, name: str) -> Generator[LeaseState, None, None]:
        """The states of ``name``: the current one at once, then one per
        change, reconnecting across nodes for as long as it is iterated (so
        a state may repeat). A ``"unavailable"`` state says that no node
        could be reached. Close the iterator to end the watch."""
        from .watch import follow

        return follow(self, _inputs.name(name))

    # Sending.

    def _send(self, request: Request, retry: Retry, until: float) -> Answer:
        attempts = Attempts(self._nodes, retry, until, self.clock)
        while True:
            step = attempts.next(request.attempt_timeout)
            if step is None:
                raise attempts.unavailable()
            index, endpoint, limit = step
            sent = self.clock()
            try:
                status, body = self._once(endpoint, request, limit)
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
                time.sleep(pause)

    def _once(self, endpoint: str, request: Request, limit: float) -> tuple[int, Any]:
        chunks: list[bytes] = []
        with self._http.stream(
            request.method,
            endpoint + request.path,
            content=request.content(),
            headers=_wire.HEADERS,
            timeout=_failover.timeout(limit),
        ) as response:
            for chunk in response.iter_bytes():
                _wire.read_limited(chunks, chunk)
        return response.status_code, _wire.decode(response.status_code, b"".join(chunks))
