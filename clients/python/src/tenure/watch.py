"""Following a name's states (``GET /v1/locks/{name}?watch=true``, one JSON
line at once and one per change), reconnecting to the next node whenever
a stream ends."""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Generator

import httpx

from . import _failover, _wire
from .state import LeaseState

if TYPE_CHECKING:
    from .client import Client


def follow(client: Client, name: str) -> Generator[LeaseState, None, None]:
    path = _wire.WATCH_PATH.format(name)
    node = client._nodes.preferred
    backoff = _wire.RECONNECT_FIRST
    # Whether the reader was told that no node could be reached since
    # lines last flowed: once per outage, not once per retry.
    told = False
    # Attempts in a row that could not open a stream. One alone says
    # little (a kept-alive connection the node had just closed, say): the
    # reader hears "unavailable" only once every node has failed.
    failed = 0
    timeout = httpx.Timeout(_wire.WATCH_IDLE, connect=_failover.CONNECT_TIMEOUT)
    while True:
        endpoints = client._nodes.endpoints
        endpoint = endpoints[node % len(endpoints)]
        opened = False
        try:
            with client._http.stream("GET", endpoint + path, timeout=timeout) as response:
                opened, failed = True, 0
                if 400 <= response.status_code < 500:
                    raise _wire.watch_refusal(response.status_code, response.read())
                if response.status_code == 200:
                    lines = _wire.Lines()
                    for data in response.iter_bytes():
                        for state in lines.feed(data):
                            # Lines flowed: a later failure starts afresh.
                            backoff, told = _wire.RECONNECT_FIRST, False
                            yield state
        except (httpx.HTTPError, _wire.BadAnswer) as e:
            failed += 0 if opened else 1
            if failed >= len(endpoints) and not told:
                told = True
                yield LeaseState(state="unavailable", error=f"{endpoint}: {e}; trying again")
        # The stream ended or never started: another node, after a pause.
        node += 1
        time.sleep(random.uniform(0, backoff))
        backoff = min(backoff * 2, _wire.RECONNECT_MAX)
