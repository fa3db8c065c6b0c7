"""Following a name's states from asyncio; see ``tenure.watch``. Unlike
the blocking form, a node that does not answer the watch's head is left
after one attempt's time (``attempt_timeout``), not after ``WATCH_IDLE``."""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING, AsyncGenerator

import httpx

from .. import _failover, _wire
from ..state import LeaseState

if TYPE_CHECKING:
    from .client import AsyncClient


async def follow(client: AsyncClient, name: str) -> AsyncGenerator[LeaseState, None]:
    path = _wire.WATCH_PATH.format(name)
    node = client._nodes.preferred
    backoff = _wire.RECONNECT_FIRST
    told = False  # told the reader no node could be reached, this outage
    failed = 0  # attempts in a row that opened nothing: "unavailable" once every node failed
    timeout = httpx.Timeout(_wire.WATCH_IDLE, connect=_failover.CONNECT_TIMEOUT)
    while True:
        endpoints = client._nodes.endpoints
        endpoint = endpoints[node % len(endpoints)]
        opened = False
        try:
            # The head within one attempt's time, as for any request; then
            # lines for as long as the node sends them.
            request = client._http.build_request("GET", endpoint + path, timeout=timeout)
            sending = client._http.send(request, stream=True)
            response = await asyncio.wait_for(sending, client.attempt_timeout)
            opened, failed = True, 0
            try:
                if 400 <= response.status_code < 500:
                    raise _wire.watch_refusal(response.status_code, await response.aread())
                if response.status_code == 200:
                    lines = _wire.Lines()
                    async for data in response.aiter_bytes():
                        for state in lines.feed(data):
                            backoff, told = _wire.RECONNECT_FIRST, False
                            yield state
            finally:
                await response.aclose()
        except (httpx.HTTPError, _wire.BadAnswer, asyncio.TimeoutError) as e:
            failed += 0 if opened else 1
            if failed >= len(endpoints) and not told:
                told = True
                why = str(e) or "no answer in time"
                yield LeaseState(state="unavailable", error=f"{endpoint}: {why}; trying again")
        # The stream ended or never started: another node, after a pause.
        node += 1
        await asyncio.sleep(random.uniform(0, backoff))
        backoff = min(backoff * 2, _wire.RECONNECT_MAX)
