"""pair.tls: the one SSL context every client uses, and the sentence for a refused certificate,
found wherever each client library puts the ssl error."""

from __future__ import annotations

import ssl
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from pair import tls


@pytest.fixture(autouse=True)
def fresh_context(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    tls.context.cache_clear()
    yield
    tls.context.cache_clear()


def verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {message}")
    error.verify_code, error.verify_message = code, message
    return error


def test_ssl_cert_file_adds_its_ca_to_the_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca_file = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    context = tls.context()
    assert context.cert_store_stats()["x509_ca"] == 1
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_an_empty_store_falls_back_to_certifi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(empty))
    assert tls.context().cert_store_stats()["x509_ca"] > 50  # Mozilla's roots


def test_a_plain_broker_gets_no_bundle_and_a_context_that_trusts_nothing() -> None:
    assert tls.for_url("http://127.0.0.1:8000") is None
    assert tls.for_url("ws://127.0.0.1:8000/x") is None
    assert tls.for_url("wss://pair.example.com/x") is tls.context()
    plain = tls.verifying("http://127.0.0.1:8000")
    assert plain.verify_mode == ssl.CERT_REQUIRED and plain.cert_store_stats()["x509_ca"] == 0


def test_the_refusal_is_found_where_each_client_puts_it() -> None:
    untrusted = verify_error(20, "unable to get local issuer certificate")
    wrapped = httpx.ConnectError("boom")
    wrapped.__cause__ = untrusted
    for exc in (untrusted, wrapped, urllib.error.URLError(untrusted)):
        refused = tls.refusal(exc, "https://pair.example.com")
        assert refused is not None
        assert refused.message == (
            "The broker's TLS certificate is not trusted by this machine: "
            "unable to get local issuer certificate (pair.example.com)."
        )
        assert "SSL_CERT_FILE" in refused.hint
    assert tls.refusal(httpx.ConnectError("refused"), "https://pair.example.com") is None
    assert tls.refusal(ConnectionRefusedError(111, "refused"), "https://pair.example.com") is None


def test_a_certificate_for_another_name_is_told_apart() -> None:
    refused = tls.refusal(verify_error(62, "Hostname mismatch"), "https://pair.example.com")
    assert refused is not None
    assert refused.message == "The broker's TLS certificate is not valid for pair.example.com: Hostname mismatch."
    assert "Check the broker URL" in refused.hint
