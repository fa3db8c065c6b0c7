"""Bearer tokens on the client's side, against stub nodes that record what
they were sent: which requests carry the token, where it comes from, that a
``401``/``403`` is ``Denied`` and goes to no other node, and that the token
shows in no repr or error."""

from __future__ import annotations

import asyncio
import functools
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator, Optional

import pytest

import tenure

TOKEN = "s3cret-7f2a"
FREE = b'{"state":"free","token":0}'


class Stub:
    """A node answering every request with ``status`` and ``body`` (a watch
    with one line), recording each request's method, path and
    ``Authorization`` header."""

    def __init__(self, status: int = 200, body: bytes = FREE) -> None:
        self.status, self.body = status, body
        self.seen: list[tuple[str, str, Optional[str]]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                stub.seen.append((self.command, self.path, self.headers.get("authorization")))
                body = stub.body + b"\n" if "watch=true" in self.path else stub.body
                self.send_response(stub.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = do_DELETE = answer  # noqa: N815 (names fixed by the base)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # A short poll: shutdown() waits for it.
        serve = functools.partial(self.server.serve_forever, poll_interval=0.02)
        threading.Thread(target=serve, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub() -> Iterator[Stub]:
    s = Stub()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def refusing() -> Iterator[tuple[Stub, Stub]]:
    """A node that refuses the token (403), and a healthy one after it."""
    first = Stub(403, b'{"error":"the token may not lock other","field":null}')
    second = Stub()
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()


def test_every_request_and_watch_carries_the_token(stub: Stub) -> None:
    with tenure.Client([stub.url], token=TOKEN) as client:
        assert client.read("jobs/x").state == "free"
        states = client.watch("jobs/x")
        assert next(states).state == "free"
        states.close()
    assert [(m, auth) for m, _, auth in stub.seen] == [("GET", f"Bearer {TOKEN}")] * 2
    assert "watch=true" in stub.seen[1][1]


def test_async_requests_and_watches_carry_the_token(stub: Stub) -> None:
    async def scenario() -> None:
        async with tenure.AsyncClient([stub.url], token=TOKEN) as client:
            assert (await client.read("jobs/x")).state == "free"
            states = client.watch("jobs/x")
            assert (await states.__anext__()).state == "free"
            await states.aclose()

    asyncio.run(scenario())
    assert [auth for _, _, auth in stub.seen] == [f"Bearer {TOKEN}"] * 2


def test_the_token_defaults_to_the_file_tenure_token_file_names(
    stub: Stub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "token"
    path.write_text(f"  {TOKEN}\n")
    monkeypatch.setenv("TENURE_TOKEN_FILE", str(path))
    with tenure.Client([stub.url]) as client:
        client.read("a")
    with tenure.Client([stub.url], token="given") as client:
        client.read("a")  # a token given wins over the file
    assert [auth for _, _, auth in stub.seen] == [f"Bearer {TOKEN}", "Bearer given"]


def test_without_a_token_no_authorization_is_sent(stub: Stub) -> None:
    with tenure.Client([stub.url]) as client:
        client.read("a")
    assert stub.seen == [("GET", "/v1/locks/a", None)]


def test_a_refusal_of_the_token_is_denied_at_once_and_goes_to_no_other_node(
    refusing: tuple[Stub, Stub],
) -> None:
    first, second = refusing
    with tenure.Client([first.url, second.url], token=TOKEN) as client:
        for call in (
            lambda: client.read("other"),
            lambda: client.acquire_once("other", "me", 5.0),
            lambda: client.lock("other", wait=None).acquire(),
            lambda: client.renew("other", "me", 3),
            lambda: client.release("other", "me", 3),
            lambda: next(client.watch("other")),
        ):
            with pytest.raises(tenure.Denied) as denied:
                call()
            assert denied.value.status == 403
            assert denied.value.message == "the token may not lock other"
            assert client.current_endpoint == first.url  # a node that answered
    assert len(first.seen) == 6 and second.seen == []


def test_an_async_refusal_is_denied_at_once(refusing: tuple[Stub, Stub]) -> None:
    first, second = refusing
    first.status, first.body = 401, b'{"error":"no token","field":null}'

    async def scenario() -> None:
        async with tenure.AsyncClient([first.url, second.url]) as client:
            with pytest.raises(tenure.Denied) as denied:
                await client.lock("other").acquire()
            assert (denied.value.status, denied.value.message) == (401, "no token")
            with pytest.raises(tenure.Denied):
                await client.watch("other").__anext__()

    asyncio.run(scenario())
    assert len(first.seen) == 2 and second.seen == []


def test_the_token_shows_in_no_repr_or_error(
    refusing: tuple[Stub, Stub], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = refusing
    with tenure.Client([first.url], token=TOKEN) as client:
        with pytest.raises(tenure.Denied) as denied:
            client.read("x")
        shown = [repr(client), str(vars(client)), repr(client._http.headers), str(denied.value)]
        assert all(TOKEN not in s for s in shown)
    for bad in (f"{TOKEN} {TOKEN}", f"{TOKEN}\u00e9"):
        with pytest.raises(tenure.Invalid) as refused:
            tenure.Client([first.url], token=bad)
        assert refused.value.field == "token" and TOKEN not in str(refused.value)
    path = tmp_path / "tokens"
    path.write_bytes(f"{TOKEN} lock *\n\xff".encode("latin-1"))  # the server's file, say
    monkeypatch.setenv("TENURE_TOKEN_FILE", str(path))
    with pytest.raises(tenure.Invalid) as refused:
        tenure.AsyncClient([first.url])
    assert str(path) in str(refused.value) and TOKEN not in str(refused.value)


@pytest.mark.parametrize("content", [None, b"", b" \n"])
def test_a_token_file_missing_or_empty_is_invalid(
    content: Optional[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_bytes(content)
    monkeypatch.setenv("TENURE_TOKEN_FILE", str(path))
    with pytest.raises(tenure.Invalid) as refused:
        tenure.Client(["http://127.0.0.1:1"])
    assert refused.value.field == "token" and str(path) in str(refused.value)
