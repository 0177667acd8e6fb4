"""How pair trusts a broker's TLS certificate: the one place that decides it, for every client
(the CLI's HTTP client, `pair spaces proxy`, the agent's WebSockets).

The rule is the operating system's trust store as OpenSSL reads it (Python's
`ssl.create_default_context()`): on Debian and Ubuntu the bundle that `update-ca-certificates`
builds (/etc/ssl/certs); `SSL_CERT_FILE` names a PEM file that replaces the bundle file and
`SSL_CERT_DIR` a hashed directory that replaces the directory (OpenSSL's own variables, read by
OpenSSL itself, so they work the same for every client here and for install.sh's downloader).
Only when that store holds no certificate at all (a minimal image without ca-certificates, the
python.org build on macOS before its "Install Certificates" step) are certifi's Mozilla roots
loaded, so a public broker still works there. Nothing here ever turns verification off.

install.sh downloads pair before pair exists, so its downloader states the same rule in a few
lines of its own (pair's tests hold both to one TLS fixture). docs/operations.md ("TLS") says
what operators and users do with it.
"""

from __future__ import annotations

import functools
import os
import ssl
from urllib.parse import urlsplit

from pair.api.errors import PairError

HINT = (
    "If the broker's certificate comes from your own CA, point SSL_CERT_FILE at that CA's certificate "
    "(a PEM file; SSL_CERT_DIR for a hashed directory), or add it to this machine's trust store "
    "(e.g. /usr/local/share/ca-certificates/ and update-ca-certificates)."
)
NAME_MISMATCH = {62, 64}  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH (OpenSSL's x509_vfy.h)


class UntrustedCertificate(PairError):
    """The broker's TLS certificate failed verification: never retried, never ignored."""


@functools.cache
def context() -> ssl.SSLContext:
    """The SSL context every client of pair uses for an https/wss broker (built once per process,
    ~20 ms: it reads the CA bundle). Verifies the chain and the host name (TLS 1.2 or newer,
    Python's defaults)."""
    ctx = ssl.create_default_context()
    if not ctx.cert_store_stats()["x509_ca"] and not os.environ.get("SSL_CERT_DIR"):
        try:
            import certifi  # httpx's dependency, so it is in pair's environment
        except ImportError:
            return ctx
        ctx.load_verify_locations(certifi.where())
    return ctx


def for_url(url: str) -> ssl.SSLContext | None:
    """The context for a broker URL (`https://` or `wss://`), None for a plain one (what the
    WebSocket client wants for ws://): a laptop's or a test's http:// broker loads no CA bundle."""
    return context() if url.startswith(("https://", "wss://")) else None


def verifying(url: str) -> ssl.SSLContext:
    """The context for an HTTP client of `url`: `context()` for https; for a plain broker, one
    that verifies but trusts no CA (no bundle to read), so a redirect to https fails rather than
    passing unchecked."""
    return for_url(url) or ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def refusal(exc: BaseException, url: str) -> UntrustedCertificate | None:
    """The error to show when `exc` (an httpx, websockets or urllib error, or an ssl one) comes
    from a certificate that failed verification, else None. Looks through the exception's causes
    and contexts, where the clients put the ssl error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        reason = getattr(current, "reason", None)  # urllib.error.URLError wraps it there
        found = current if isinstance(current, ssl.SSLCertVerificationError) else reason
        if isinstance(found, ssl.SSLCertVerificationError):
            context.cache_clear()  # the next attempt reads the store again: someone may fix it meanwhile
            return _refusal(found, url)
        current = current.__cause__ or current.__context__
    return None


def _refusal(error: ssl.SSLCertVerificationError, url: str) -> UntrustedCertificate:
    host = urlsplit(url).hostname or url
    why = error.verify_message or error.reason or str(error)
    if error.verify_code in NAME_MISMATCH:
        return UntrustedCertificate(
            f"The broker's TLS certificate is not valid for {host}: {why}.",
            "Check the broker URL (`pair whoami`, PAIR_URL): use the host name its certificate names.",
        )
    return UntrustedCertificate(f"The broker's TLS certificate is not trusted by this machine: {why} ({host}).", HINT)
