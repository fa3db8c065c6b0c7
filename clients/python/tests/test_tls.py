"""HTTPS: a client that trusts the cluster's CA locks; one that does not
is told why."""

from pathlib import Path

import pytest

import tenure
from servers import Dev


def test_a_client_that_trusts_the_dev_ca_locks_over_https(tmp_path: Path) -> None:
    dev = Dev(tmp_path, https=True)
    try:
        assert dev.ca is not None
        with tenure.Client(dev.urls, ca=str(dev.ca)) as client:
            with client.lock("over-tls", ttl=5.0) as lease:
                assert client.read("over-tls").token == lease.token
        with pytest.raises(tenure.Unavailable, match="CERTIFICATE_VERIFY_FAILED"):
            with tenure.Client(dev.urls, call_timeout=1.0) as untrusting:
                untrusting.read("over-tls")
    finally:
        dev.stop()


def test_a_client_certificate_needs_its_key() -> None:
    with pytest.raises(tenure.Invalid, match="both cert and key"):
        tenure.Client("https://127.0.0.1:1", cert="client.pem")
