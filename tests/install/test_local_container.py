"""scripts/local-container.sh as the README's newcomer runs it: right after `make run`, whose venv
has the package with its `broker` extra and none of the test extra (no pytest); and stopped the
way a person stops it, with Ctrl-C (test_journey.py stops it once it holds a Space)."""

from __future__ import annotations

import dataclasses
import signal
import socket
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, cast

import pytest

from pair.api.errors import PairError
from pair.api.tokens import space_key
from tests.install.conftest import REPO
from tests.support.broker import real_broker
from tests.support.container import eventually, free_port
from tests.support.people import Person
from tests.support.processes import Output, clean_env, ctrl_c, ended_by_ctrl_c, holding, stop
from tests.support.run_venv import only_run_deps
from tests.support.tls import test_ca, tls_proxy
from tests.support.tools import need_root

if TYPE_CHECKING:
    from tests.install.debian import Chroot


def test_the_script_runs_in_the_venv_make_run_makes() -> None:
    # A name it refuses is checked after the Debian-root machinery is imported: the whole import
    # closure loads, and the refusal is the script's own sentence, not an ImportError's traceback.
    result = subprocess.run(
        [str(REPO / "scripts" / "local-container.sh"), "--name", "Not a name!", "--key-file", "/nonexistent"],
        env=only_run_deps(clean_env()),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("error: 'Not a name!' is not a Space name."), result.stderr


def test_the_blocker_blocks_what_make_run_does_not_install() -> None:
    result = subprocess.run(
        [str(REPO / ".venv" / "bin" / "python"), "-c", "import pytest"],
        env=only_run_deps(clean_env()),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "not in a `make run` venv" in result.stderr, result


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_stopped_while_it_installs_it_leaves_nothing(how: str, tmp_path: Path) -> None:
    """Reproduction: Ctrl-C reached the namespace's holder too, which died, so the clean-up failed
    with `FileNotFoundError: /proc/PID/ns/mnt` (a traceback) and left the root mounted. Here the
    broker the key names never answers, so the script waits inside the mounted root (fetching
    install.sh) when it is stopped."""
    need_root()
    with socket.socket() as broker:
        broker.bind(("127.0.0.1", 0))
        broker.listen()
        broker.settimeout(300)  # the first run builds the Debian root (~1 minute)
        key = space_key(f"http://127.0.0.1:{broker.getsockname()[1]}", "s" * 43)
        work = tmp_path / "root"
        proc = subprocess.Popen(
            [str(REPO / "scripts" / "local-container.sh"), "--name", "demo", "--work", str(work)],
            env=only_run_deps(clean_env(PAIR_SPACE_KEY=key)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        output = Output(proc)
        try:
            connection, _ = broker.accept()  # the script asks for install.sh: the root is mounted
            with connection:
                assert holding(work), "the root is mounted while it installs"
                if how == "ctrl-c":
                    ctrl_c(proc)
                else:
                    proc.send_signal(signal.SIGTERM)
                code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            output.finish()
            assert proc.stdout is not None
            proc.stdout.close()
    text = output.text()
    assert "Traceback" not in text, text
    assert code == 128 + (signal.SIGINT if how == "ctrl-c" else signal.SIGTERM), text
    assert "stopped (SIG" in text and "before the container was ready; nothing is left" in text, text
    assert holding(work) == []
    assert not work.exists()


def run_script(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """scripts/local-container.sh as a terminal runs it: a session of its own, output merged."""
    return subprocess.Popen(
        [str(REPO / "scripts" / "local-container.sh"), *args],
        env=only_run_deps(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_a_broker_behind_tls_with_a_private_ca_is_trusted_through_ssl_cert_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reproduction (D7): the script passed no CA into the container (install.sh there refused the
    broker's certificate), and the root had no /etc/hosts (`localhost` resolved nowhere). Here the
    broker is https://localhost:PORT behind nginx with a test CA: without the CA the script refuses
    it in one sentence and leaves nothing; with SSL_CERT_FILE, install.sh, bootstrap and the agent
    (over wss, started by supervisord) in the container all trust it."""
    need_root()
    ca = test_ca(tmp_path / "ca")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca_file))  # the owner's CLI on this machine
    port = free_port()
    url = f"https://localhost:{port}"
    with (
        real_broker(tmp_path / "broker", "--public-url", url) as plain,
        tls_proxy(tmp_path / "nginx", [plain.url.removeprefix("http://")], ca, port=port),
    ):
        alice = Person(dataclasses.replace(plain, url=url), "alice", tmp_path, ssh_key=False)
        key_file = alice.dir / "demo.key"
        alice.ok("spaces", "keys", "create", "--name", "demo", "--output", str(key_file))
        args = ("--name", "demo", "--key-file", str(key_file))

        missing = subprocess.run(
            [str(REPO / "scripts" / "local-container.sh"), *args],
            env=only_run_deps(clean_env(SSL_CERT_FILE=str(tmp_path / "nowhere.pem"))),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert missing.returncode == 1 and "Traceback" not in missing.stderr, missing
        assert missing.stderr.startswith(f"error: SSL_CERT_FILE names {tmp_path / 'nowhere.pem'}, which is not a file")

        untrusted = {k: v for k, v in clean_env().items() if k != "SSL_CERT_FILE"}
        work = tmp_path / "refused"
        proc = run_script(*args, "--work", str(work), env=untrusted)
        output = Output(proc)
        try:
            assert proc.wait(timeout=300) == 1
        finally:
            stop(proc)
            output.finish()
            assert proc.stdout is not None
            proc.stdout.close()
        assert "error: The broker's TLS certificate is not trusted by this machine: " in output.text()
        assert "hint: If the broker's certificate comes from your own CA, point SSL_CERT_FILE" in output.text()
        assert "Traceback" not in output.text() and not work.exists()

        work = tmp_path / "trusted"
        proc = run_script(*args, "--work", str(work), env=clean_env(SSL_CERT_FILE=str(ca.ca_file)))
        output = Output(proc)
        with ended_by_ctrl_c(proc, output):
            output.wait_for(r"ready: the container demo is a Space", timeout=840)
            eventually(lambda: alice.state("demo") == "running", "the agent heartbeats over wss", timeout=60)
    assert "Traceback" not in output.text(), output.text()
    assert holding(work) == [] and not work.exists()


def test_a_ca_directory_is_copied_into_the_root_as_certificates_not_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SSL_CERT_DIR (a hashed directory: `openssl rehash` makes HASH.0 links) reaches the root as a
    directory of certificates: a link to a file outside the root would dangle there."""
    from tests.install import local_container

    ca = test_ca(tmp_path / "ca")
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "abcd1234.0").symlink_to(ca.ca_file)
    monkeypatch.setenv("SSL_CERT_DIR", str(certs))
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    root = tmp_path / "root"
    view = SimpleNamespace(path=lambda inside: root / inside.lstrip("/"))  # Chroot.path's host view

    env = local_container._copy_trust(cast("Chroot", view), local_container._trust())
    assert env == {"SSL_CERT_DIR": local_container.TRUST_IN_ROOT["SSL_CERT_DIR"]}
    copied = root / env["SSL_CERT_DIR"].lstrip("/") / "abcd1234.0"
    assert not copied.is_symlink() and copied.read_bytes() == ca.ca_file.read_bytes()

    monkeypatch.setenv("SSL_CERT_DIR", str(ca.ca_file))  # a file where a directory belongs
    with pytest.raises(PairError, match=r"SSL_CERT_DIR names .*, which is not a directory this script can read\."):
        local_container._trust()
