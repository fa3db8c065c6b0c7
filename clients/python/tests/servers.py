"""Real tenure processes for the tests: ``tenure dev`` (three nodes in one
process) and clusters of three ``tenure server`` processes, on loopback
ports the OS chooses, in temporary folders. Every process is stopped by
its pid when its owner stops (also when a test fails)."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Callable, Optional

REPO_ROOT = Path(__file__).resolve().parents[3]
#: How long a node may take to print its startup line (2 loaded cores).
START_TIMEOUT = 30.0
#: How long a started cluster may take until every node reaches a quorum.
READY_TIMEOUT = 30.0


def tenure_bin() -> str:
    path = os.environ.get("TENURE_BIN") or str(REPO_ROOT / "target" / "debug" / "tenure")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"no tenure binary at {path}: build it, or set TENURE_BIN")
    return path


def wait_until(what: str, done: Callable[[], bool], within: float, every: float = 0.02) -> None:
    """Poll ``done`` until true; fail after ``within`` seconds. Only for
    states nothing announces (a node reaching its quorum, a waiter queued)."""
    give_up = time.monotonic() + within
    while not done():
        if time.monotonic() > give_up:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        time.sleep(every)


def get_json(
    url: str, timeout: float = 2.0, ca: Optional[Path] = None
) -> Optional[dict[str, object]]:
    """A GET of a JSON object, or None when no answer came."""
    context = ssl.create_default_context(cafile=str(ca)) if ca is not None else None
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as r:
            body = json.loads(r.read())
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


class Proc:
    """One tenure process. Its stdout is drained by a thread for its whole
    life, so it never blocks on a full pipe; lines go to ``lines``."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        with open(log, "wb") as stderr:
            self.popen = subprocess.Popen(
                [tenure_bin(), *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env={**os.environ, "RUST_LOG": "info"},
            )
        self.lines: queue.Queue[Optional[str]] = queue.Queue()
        threading.Thread(target=self._drain, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _drain(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            self.lines.put(raw.decode(errors="replace").rstrip("\n"))
        self.lines.put(None)  # the process closed its stdout: it exited

    def next_line(self) -> str:
        """The next line printed; RuntimeError if the process exits first."""
        try:
            line = self.lines.get(timeout=START_TIMEOUT)
        except queue.Empty:
            line = None
        if line is None:
            self.stop()
            raise RuntimeError(f"tenure printed no startup line: {self.log.read_text()[-2000:]}")
        return line

    def signal(self, sig: signal.Signals) -> None:
        if self.popen.poll() is None:
            os.kill(self.pid, sig)

    def stop(self) -> None:
        """SIGCONT (it may be stopped), SIGKILL, reap: bounded."""
        if self.popen.poll() is None:
            os.kill(self.pid, signal.SIGCONT)
            os.kill(self.pid, signal.SIGKILL)
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        if self.popen.stdout is not None:
            self.popen.stdout.close()


def free_ports(n: int) -> list[int]:
    """Ports that were free a moment ago: bind to port 0, read, release."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def ready(url: str, ca: Optional[Path] = None) -> bool:
    health = get_json(url + "/healthz", timeout=1.0, ca=ca)
    return bool(health and health.get("quorum_reachable"))


class Dev:
    """``tenure dev --http-port 0``: three nodes in one process; with
    ``tokens`` (the lines of a tokens file), ``--tokens`` turns
    authentication on; with ``https``, the nodes serve HTTPS and ``ca`` is
    the dev CA to trust."""

    def __init__(
        self, folder: Path, tokens: Optional[list[str]] = None, https: bool = False
    ) -> None:
        args = ["dev", "--http-port", "0", "--data-dir", str(folder / "data")]
        self.ca: Optional[Path] = None
        if https:
            args.append("--https")
            self.ca = folder / "data" / "tls" / "ca.pem"
        if tokens is not None:
            path = folder / "tokens"
            path.write_text("".join(line + "\n" for line in tokens))
            args += ["--tokens", str(path)]
        self.proc = Proc(args, folder / "dev.log")
        self.urls: list[str] = []
        try:
            while len(self.urls) < 3:
                words = self.proc.next_line().split()
                scheme = "https://" if https else "http://"
                self.urls += [scheme + w[5:] for w in words if w.startswith("http=")]
            wait_until(
                "the dev cluster's quorum",
                lambda: all(ready(url, self.ca) for url in self.urls),
                READY_TIMEOUT,
            )
        except BaseException:
            self.stop()
            raise

    def freeze(self) -> None:
        self.proc.signal(signal.SIGSTOP)

    def stop(self) -> None:
        self.proc.stop()


class Cluster:
    """Three ``tenure server`` processes."""

    def __init__(self, folder: Path) -> None:
        self.nodes: list[Proc] = []
        last = ""
        # A port freed by free_ports may be taken by another before the
        # node binds it: rare, and then the whole start is tried again.
        for attempt in range(5):
            ports = free_ports(6)
            http, peer = ports[:3], ports[3:]
            peers = ",".join(f"{i + 1}=127.0.0.1:{p}" for i, p in enumerate(peer))
            try:
                for i in range(3):
                    node = folder / f"try-{attempt}" / f"node-{i + 1}"
                    node.mkdir(parents=True)
                    args = [
                        "server", "--id", str(i + 1), "--data-dir", str(node),
                        "--http", f"127.0.0.1:{http[i]}",
                        "--peer-listen", f"127.0.0.1:{peer[i]}", "--peers", peers,
                        # These tests are of the client: loopback peers in plain TCP.
                        "--insecure-peers",
                    ]
                    self.nodes.append(Proc(args, node.with_suffix(".log")))
                    self.nodes[-1].next_line()
            except RuntimeError as e:
                last = str(e)
                self.stop()
                self.nodes = []
                continue
            self.urls = [f"http://127.0.0.1:{p}" for p in http]
            try:
                wait_until("the cluster's quorum", lambda: all(map(ready, self.urls)), READY_TIMEOUT)
            except BaseException:
                self.stop()
                raise
            return
        raise RuntimeError(f"could not start a cluster: {last}")

    def index(self, url: str) -> int:
        return self.urls.index(url)

    def kill(self, i: int) -> None:
        self.nodes[i].stop()

    def freeze(self, i: int) -> None:
        self.nodes[i].signal(signal.SIGSTOP)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
