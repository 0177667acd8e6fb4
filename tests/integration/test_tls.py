"""TLS for real: a test CA, Debian's nginx terminating TLS on loopback in front of a real
`pair-broker serve`, and the real `pair` executable. pair trusts the broker through the usual
means (SSL_CERT_FILE, SSL_CERT_DIR, the system store) and refuses it otherwise with one sentence
and a hint, never a traceback (pair.tls)."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.broker import RealBroker, real_broker
from tests.support.container import free_port
from tests.support.people import Person
from tests.support.processes import executable
from tests.support.tls import HEALTHZ, INTERNAL, LOCATION, PASSIVE_CHECK, UPGRADE_MAP, TestCA, test_ca, tls_proxy
from tests.support.tools import need_tool

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
UNTRUSTED = (
    "error: The broker's TLS certificate is not trusted by this machine: "
    "unable to get local issuer certificate (127.0.0.1).\n"
    "hint: If the broker's certificate comes from your own CA, point SSL_CERT_FILE at that CA's certificate"
)


@dataclass
class Tls:
    broker: RealBroker  # its url is nginx's https:// one
    ca: TestCA
    root: Path


@pytest.fixture
def tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Tls]:
    ca = test_ca(tmp_path / "ca")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca_file))  # every process the test starts trusts the CA
    port = free_port()
    with real_broker(tmp_path / "broker", "--public-url", f"https://127.0.0.1:{port}") as broker:
        upstream = broker.url.removeprefix("http://")
        with tls_proxy(tmp_path / "nginx", [upstream], ca, port=port) as proxy:
            yield Tls(dataclasses.replace(broker, url=proxy.url), ca, tmp_path)


def without_trust(person: Person, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`pair ARGS` as `person`, but without SSL_CERT_FILE: this machine's own store only."""
    return subprocess.run(
        [executable("pair"), *args],
        cwd=person.dir,
        env={**{k: v for k, v in person.env.items() if k != "SSL_CERT_FILE"}, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_cli_trusts_the_broker_through_ssl_cert_file_and_refuses_it_without(tls: Tls) -> None:
    alice = Person(tls.broker, "alice", tls.root, ssh_key=False)  # logs in over https, trusting the CA
    alice.ok("spaces", "authorize", "--no-share", "--name", "demo")
    assert [s["name"] for s in alice.spaces()] == ["demo"]

    listed = without_trust(alice, "spaces", "list")
    assert listed.returncode == 1
    assert listed.stderr.startswith(UNTRUSTED), listed.stderr
    assert "Traceback" not in listed.stderr and listed.stdout == ""
    login = without_trust(alice, "login", alice.email, "--key-file", str(alice.key_file), "--url", tls.broker.url)
    assert login.returncode == 1
    assert login.stderr.startswith(UNTRUSTED), login.stderr


def test_ssl_cert_dir_is_honoured_too(tls: Tls) -> None:
    alice = Person(tls.broker, "alice", tls.root, ssh_key=False)
    hashed = tls.root / "certs"
    hashed.mkdir()
    shutil.copy(tls.ca.ca_file, hashed / "pair-test-ca.pem")
    subprocess.run([need_tool("openssl"), "rehash", str(hashed)], check=True)
    listed = without_trust(alice, "spaces", "list", SSL_CERT_DIR=str(hashed))
    assert listed.returncode == 0, listed.stderr


def test_a_certificate_for_another_name_is_refused_as_such(tls: Tls) -> None:
    alice = Person(tls.broker, "alice", tls.root, ssh_key=False)
    other = test_ca(tls.root / "other", "broker.example.com")
    upstream = tls.broker.output.text().split("listening on http://", 1)[1].split()[0]
    with tls_proxy(tls.root / "nginx-other", [upstream], other) as proxy:
        login = alice.pair(
            "login", alice.email, "--key-file", str(alice.key_file), "--url", proxy.url,
            env={"SSL_CERT_FILE": str(other.ca_file)},
        )  # fmt: skip
    assert login.returncode == 1
    assert login.stderr.startswith(
        "error: The broker's TLS certificate is not valid for 127.0.0.1: IP address mismatch"
    ), login.stderr
    assert "hint: Check the broker URL" in login.stderr


def test_the_proxy_goes_through_wss_and_refuses_an_untrusted_broker(tls: Tls) -> None:
    alice = Person(tls.broker, "alice", tls.root, ssh_key=False)
    # Trusted: the WebSocket upgrade reaches the broker through nginx, which refuses an unknown Space.
    known = alice.pair("spaces", "proxy", "sp_aaaaaaaaaaaa")
    assert known.returncode == 1
    assert known.stderr.startswith("pair: error: The Space sp_aaaaaaaaaaaa was not found."), known.stderr
    untrusted = without_trust(alice, "spaces", "proxy", "sp_aaaaaaaaaaaa")
    assert untrusted.returncode == 1
    assert untrusted.stderr.startswith(f"pair: {UNTRUSTED.replace(chr(10), chr(10) + 'pair: ')}"), untrusted.stderr
    assert "Traceback" not in untrusted.stderr


def test_the_documented_nginx_location_is_the_tested_one() -> None:
    doc = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    shown = re.search(r"```nginx\n(.*?)```", doc, re.DOTALL)
    assert shown, "docs/operations.md shows no nginx configuration"
    for line in [*LOCATION.splitlines(), INTERNAL, HEALTHZ, UPGRADE_MAP, PASSIVE_CHECK]:
        assert line.strip() in shown.group(1), f"docs/operations.md's nginx block lacks {line.strip()!r}"


def install_sh_downloader() -> str:
    """The Python program install.sh runs to download pair's wheel (its `<<'PY'` here-document)."""
    script = (REPO / "install.sh").read_text()
    found = re.search(r"<<'PY'\n(.*?)\nPY\n", script, re.DOTALL)
    assert found, "install.sh has no download program"
    return found.group(1)


def test_install_sh_downloads_by_the_same_rule_and_says_the_same_sentence(tls: Tls, tmp_path: Path) -> None:
    alice = Person(tls.broker, "alice", tls.root, ssh_key=False)
    wheel_url = f"{tls.broker.url}/download/pair.whl"
    program = install_sh_downloader()

    def download(**env: str) -> subprocess.CompletedProcess[str]:
        base = {k: v for k, v in alice.env.items() if k != "SSL_CERT_FILE"}
        return subprocess.run(
            [executable("python"), "-", wheel_url, str(tmp_path)],
            input=program,
            env={**base, **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    refused = download()
    assert refused.returncode == 1
    cli = without_trust(alice, "spaces", "list")
    assert refused.stderr == "".join(f"pair: {line}\n" for line in cli.stderr.splitlines()), refused.stderr
    saved = download(SSL_CERT_FILE=str(tls.ca.ca_file))
    assert saved.returncode == 0, saved.stderr
    assert Path(saved.stdout.strip()).name.endswith(".whl") and Path(saved.stdout.strip()).stat().st_size > 10_000
