"""Checking values before they are sent, as the server would check them,
so that a mistake is reported at once and names the field to fix."""

from __future__ import annotations

import math
import os
import random
import re
import socket
import ssl
from typing import Optional, Sequence, Union
from urllib.parse import quote, urlsplit

from .errors import Invalid

#: The endpoints of a local development cluster (``tenure dev``).
DEV_ENDPOINTS = ("http://127.0.0.1:7400", "http://127.0.0.1:7401", "http://127.0.0.1:7402")

_NAME = re.compile(r"[A-Za-z0-9._\-/:]{1,128}")
MIN_TTL_MS = 10
MAX_TTL_MS = 86_400_000
MAX_WAIT = 300.0
#: Names the file holding the bearer token when none is given.
TOKEN_FILE_ENV = "TENURE_TOKEN_FILE"


def endpoints(given: Union[str, Sequence[str], None]) -> list[str]:
    """The endpoints given, else ``TENURE_ENDPOINTS``, else the dev ports;
    each written as ``http://host:port`` or ``https://host:port``."""
    if given is None:
        given = os.environ.get("TENURE_ENDPOINTS") or ",".join(DEV_ENDPOINTS)
    if isinstance(given, str):
        given = given.split(",")
    out = []
    for raw in given:
        e = raw.strip().rstrip("/")
        if not e:
            continue
        parts = urlsplit(e)
        try:
            parts.port  # parsed only when asked for
        except ValueError:
            parts = urlsplit("")
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
            raise Invalid(
                f"endpoint {e!r}: write it as http://host:port or https://host:port", "endpoints"
            )
        out.append(e)
    if not out:
        raise Invalid("no endpoints given", "endpoints")
    return out


def token(given: Optional[str]) -> Optional[str]:
    """The bearer token given, else the contents (stripped) of the file
    ``TENURE_TOKEN_FILE`` names, else ``None`` (no token is sent). Errors
    name the file, never the token."""
    where = "token"
    if given is None:
        path = os.environ.get(TOKEN_FILE_ENV)
        if not path:
            return None
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as e:
            why = e.strerror or type(e).__name__
            raise Invalid(f"{TOKEN_FILE_ENV}={path!r}: cannot read it: {why}", "token") from None
        # Decoded by hand: a decoding error would quote the token's bytes.
        given = "".join(map(chr, raw))
        where = f"the token in {path!r} (from {TOKEN_FILE_ENV})"
    value = given.strip()
    if not value:
        raise Invalid(f"{where} is empty", "token")
    if not all("!" <= c <= "~" for c in value):
        raise Invalid(
            f"{where}: a token is one word of printable ASCII characters, no spaces",
            "token",
        )
    return value


def name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise Invalid(
            f"lease name {value!r}: use 1 to 128 ASCII letters, digits and . _ - / :",
            "name",
        )
    return value


def holder(value: str) -> str:
    if not 1 <= len(value) <= 128 or not all("!" <= c <= "~" for c in value):
        raise Invalid(
            f"holder {value!r}: use 1 to 128 printable ASCII characters, no spaces",
            "holder",
        )
    return value


def ttl_ms(ttl: float) -> int:
    """A ttl in seconds as the whole milliseconds the API takes."""
    ms = round(ttl * 1000) if math.isfinite(ttl) else -1
    if not MIN_TTL_MS <= ms <= MAX_TTL_MS:
        raise Invalid(f"ttl is {ttl} s; it must be between 0.01 s and 1 day", "ttl")
    return int(ms)


def wait_ms(wait: float) -> int:
    """A long poll's wait in whole milliseconds, rounded up."""
    return max(math.ceil(round(wait * 1_000_000) / 1000), 0)


def checked_wait(wait: Optional[float]) -> Optional[float]:
    if wait is not None and not (math.isfinite(wait) and wait >= 0):
        raise Invalid(f"wait is {wait}; give seconds, 0 or more, or None to wait forever", "wait")
    return wait


def margin(value: float) -> float:
    if not (math.isfinite(value) and value >= 0):
        raise Invalid(f"margin is {value}; give seconds, 0 or more", "margin")
    return value


def query(value: str) -> str:
    """Holders are printable ASCII: escape what means something in a URL."""
    return quote(value, safe=":")


def default_holder_id() -> str:
    """``{hostname}:{pid}:{random}``: unique per process. The random part
    keeps two processes apart when a pid is reused, or two containers share
    a hostname and a pid."""
    host = os.environ.get("HOSTNAME", "").strip() or socket.gethostname()
    host = "".join(c for c in host if "!" <= c <= "~")[:64] or "host"
    return f"{host}:{os.getpid()}:{random.getrandbits(32):08x}"


def tls(ca: Optional[str], cert: Optional[str], key: Optional[str]) -> Union[ssl.SSLContext, bool]:
    """What httpx verifies ``https://`` nodes with: the CA file given, else
    ``TENURE_CA``, else the system's CAs; and the client certificate and
    key given, else ``TENURE_CERT`` and ``TENURE_KEY``, for a cluster
    started with ``--client-ca``."""
    ca = ca or os.environ.get("TENURE_CA") or None
    cert = cert or os.environ.get("TENURE_CERT") or None
    key = key or os.environ.get("TENURE_KEY") or None
    if ca is None and cert is None and key is None:
        return True
    if (cert is None) != (key is None):
        raise Invalid("a client certificate needs both cert and key", "cert")
    try:
        context = ssl.create_default_context(cafile=ca)
        if cert is not None:
            context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise Invalid(f"cannot use the TLS files: {e}", "ca") from None
    return context
