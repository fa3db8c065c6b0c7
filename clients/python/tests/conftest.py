"""Fixtures: real tenure clusters, stopped whatever the test's outcome."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from servers import Cluster, Dev


@pytest.fixture(autouse=True)
def no_token_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients get a token only where a test gives one."""
    monkeypatch.delenv("TENURE_TOKEN_FILE", raising=False)


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    """One ``tenure dev`` shared by a module's tests (each uses its own
    lease names)."""
    d = Dev(tmp_path_factory.mktemp("dev"))
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture
def fresh_dev(tmp_path: Path) -> Iterator[Dev]:
    """A ``tenure dev`` of the test's own, for a test that freezes it."""
    d = Dev(tmp_path)
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Three ``tenure server`` processes of the test's own."""
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.stop()
