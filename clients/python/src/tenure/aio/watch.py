"""Following a name's states from asyncio; see ``tenure.watch``."""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING, AsyncGenerator

import httpx

from .. import _wire
from ..state import LeaseState

if TYPE_CHECKING:
    from .client import AsyncClient


async def follow(client: AsyncClient, name: str) -> AsyncGenerator[LeaseState, None]:
    path = _wire.WATCH_PATH.format(name)
    node = client._nodes.preferred
    backoff = _wire.RECONNECT_FIRST
    told = False  # told the reader no node could be reached, this outage
    timeout = httpx.Timeout(_wire.WATCH_IDLE, connect=_wire.CONNECT_TIMEOUT)
    while True:
        endpoints = client._nodes.endpoints
        endpoint = endpoints[node % len(endpoints)]
        opened = False
        try:
            async with client._http.stream("GET", endpoint + path, timeout=timeout) as response:
                opened = True
                if 400 <= response.status_code < 500:
                    raise _wire.watch_refusal(response.status_code, await response.aread())
                if response.status_code == 200:
                    lines = _wire.Lines()
                    async for data in response.aiter_bytes():
                        for state in lines.feed(data):
                            backoff, told = _wire.RECONNECT_FIRST, False
                            yield state
        except (httpx.HTTPError, _wire.BadAnswer) as e:
            if not opened and not told:
                told = True
                yield LeaseState(state="unavailable", error=f"{endpoint}: {e}; trying again")
        # The stream ended or never started: another node, after a pause.
        node += 1
        await asyncio.sleep(random.uniform(0, backoff))
        backoff = min(backoff * 2, _wire.RECONNECT_MAX)
