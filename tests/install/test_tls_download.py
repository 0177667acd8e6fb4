"""install.sh takes pair from a broker behind TLS (a test CA, Debian's nginx): in a real Debian 12
root it refuses the broker's certificate with one sentence and a hint naming SSL_CERT_FILE, then,
given SSL_CERT_FILE, downloads the wheel and installs it."""

from __future__ import annotations

from pathlib import Path

import pytest

import pair
from tests.install.debian import debian
from tests.install.test_debian import served_install_sh
from tests.support.broker import real_broker
from tests.support.container import free_port
from tests.support.tls import test_ca, tls_proxy
from tests.support.tools import need_root

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def test_install_sh_downloads_pair_from_a_tls_broker_only_when_its_ca_is_trusted(tmp_path: Path) -> None:
    need_root()
    ca = test_ca(tmp_path / "ca")
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    with (
        real_broker(tmp_path / "broker", "--public-url", url) as broker,
        tls_proxy(tmp_path / "nginx", [broker.url.removeprefix("http://")], ca, port=port),
        debian(tmp_path / "root") as chroot,
    ):
        script = served_install_sh(broker.url)
        args = ["sh", "-s", "--", "--package", "broker", "--broker-url", url, "--ssh-port", str(free_port())]
        refused = chroot.run(*args, input=script)
        assert refused.returncode == 1, refused.stdout
        assert (
            "pair: error: The broker's TLS certificate is not trusted by this machine: "
            "unable to get local issuer certificate (127.0.0.1).\n"
            "pair: hint: If the broker's certificate comes from your own CA, point SSL_CERT_FILE at"
        ) in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
        assert not chroot.path("/opt/pair/pair").exists()

        chroot.path("/root/pair-ca.pem").write_bytes(ca.ca_file.read_bytes())
        installed = chroot.run(*args, input=script, env={"SSL_CERT_FILE": "/root/pair-ca.pem"})
        assert installed.returncode == 0, f"{installed.stdout}\n{installed.stderr}"
        assert f"install {url}/download/pair.whl into /opt/pair/venv" in installed.stdout
        assert chroot.ok("/opt/pair/pair", "--version") == f"pair {pair.__version__}\n"
