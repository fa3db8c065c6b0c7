"""A lease is renewed until its deadline, even when one renewal call runs
out of attempts long before it (a long ttl, nodes refusing connections).
Against a stub node: one that grants, then answers 503, beside 31
addresses where nothing listens."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

import tenure


class GrantsOnce(BaseHTTPRequestHandler):
    calls = 0

    def do_PUT(self) -> None:  # noqa: N802 (the handler's name is fixed)
        length = int(self.headers.get("content-length", "0"))
        self.rfile.read(length)
        GrantsOnce.calls += 1
        if GrantsOnce.calls == 1:
            status, body = 201, b'{"token":1,"holder":"me","ttl_ms":1500,"max_drift_ppm":1000}'
        else:
            status, body = 503, b'{"error":"overloaded","outcome_unknown":false}'
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def granting_node() -> Iterator[str]:
    GrantsOnce.calls = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), GrantsOnce)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def dead_endpoint() -> str:
    """An address where nothing listens: bound, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_renewals_go_on_until_the_deadline_not_just_for_a_calls_attempts(
    granting_node: str,
) -> None:
    endpoints = [granting_node] + [dead_endpoint() for _ in range(31)]
    client = tenure.Client(endpoints)
    started = time.monotonic()
    lease = client.lock("x", ttl=1.5, holder="me", margin=0.1).acquire()
    assert lease.lost.wait(timeout=10.0), "the lease is lost at its deadline"
    elapsed = time.monotonic() - started
    assert lease.lost_reason == tenure.LostReason.EXPIRED
    # 1.5 s · 0.998 − 0.1 s = 1.397 s after the send.
    assert elapsed >= 1.39, f"lost early, after {elapsed:.3f} s"
    assert GrantsOnce.calls > 3, "renewals went on after a call's attempts ran out"
