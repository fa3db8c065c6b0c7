"""Bearer tokens against a real ``tenure dev --tokens FILE``: what each
permission lets a client do, and ``Denied`` for the rest."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Iterator

import pytest

import tenure
from servers import Dev

LOCK_JOBS = "lock-jobs-5b1c9e0d7a33"
READ_ALL = "read-all-93de41f6b2c8"
ADMIN = "admin-0a4f7c19e5d2b6"
TOKENS = [
    "# token          permission  prefix",
    f"{LOCK_JOBS}     lock        jobs/",
    "",
    f"{READ_ALL}      read        *",
    f"{ADMIN}         admin       *",
]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    """One ``tenure dev`` requiring tokens, shared by this module's tests."""
    d = Dev(tmp_path_factory.mktemp("secured"), tokens=TOKENS)
    try:
        yield d
    finally:
        d.stop()


def test_a_lock_token_locks_under_its_prefix_and_is_denied_elsewhere(secured: Dev) -> None:
    with tenure.Client(secured.urls, token=LOCK_JOBS) as client:
        with client.lock("jobs/x", ttl=5.0, holder="worker") as lease:
            state = client.read("jobs/x")
            assert (state.holder, state.token) == ("worker", lease.token)
        assert client.read("jobs/x").state == "free"
        with pytest.raises(tenure.Denied) as denied:
            client.lock("other", ttl=5.0).acquire()
        assert denied.value.status == 403 and denied.value.message
        with pytest.raises(tenure.Denied) as denied:
            client.read("other")
        assert denied.value.status == 403


def test_no_token_or_an_unknown_one_is_denied_with_401(secured: Dev) -> None:
    for token in (None, "unknown-token-4e8a1b7c"):
        with tenure.Client(secured.urls, token=token) as client:
            with pytest.raises(tenure.Denied) as denied:
                client.lock("jobs/x", ttl=5.0).acquire()
            assert denied.value.status == 401
            with pytest.raises(tenure.Denied) as denied:
                next(client.watch("jobs/x"))
            assert denied.value.status == 401


def test_a_read_token_reads_and_watches_but_cannot_acquire(
    secured: Dev, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "token"
    path.write_text(READ_ALL + "\n")
    monkeypatch.setenv("TENURE_TOKEN_FILE", str(path))  # the default source
    with tenure.Client(secured.urls) as client:
        assert client.read("anything").state == "free"
        states = client.watch("jobs/read")
        try:
            assert next(states).state == "free"
        finally:
            states.close()
        with pytest.raises(tenure.Denied) as denied:
            client.lock("jobs/read", ttl=5.0).acquire()
        assert denied.value.status == 403


def test_an_admin_token_may_do_anything_and_async_clients_send_tokens(secured: Dev) -> None:
    async def scenario() -> None:
        async with tenure.AsyncClient(secured.urls, token=ADMIN) as client:
            async with client.lock("anywhere", ttl=5.0) as lease:
                assert (await client.read("anywhere")).token == lease.token
        async with tenure.AsyncClient(secured.urls, token=LOCK_JOBS) as client:
            async with client.lock("jobs/async", ttl=5.0):
                pass
            with pytest.raises(tenure.Denied) as denied:
                await client.lock("other", ttl=5.0).acquire()
            assert denied.value.status == 403

    asyncio.run(scenario())
