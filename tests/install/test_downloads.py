"""The broker serves install.sh and a wheel of `pair` (broker/downloads.py), so a self-hosted team
needs nothing else: the wheel is a real one (pip installs it into a fresh virtualenv and `pair`
runs) and carries exactly the CLI's dependencies, never the broker's."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import io
import re
import subprocess
import sys
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

import pair
from broker import downloads
from broker.errors import Problem
from tests.install.conftest import INSTALL_SH, REPO
from tests.support.broker import InProcessBroker

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

WHEEL_NAME = f"pair_spaces-{pair.__version__}-py3-none-any.whl"


def base_dependencies() -> set[str]:
    """The installed distribution's requirements without extras (what the broker promises)."""
    return {r for r in importlib.metadata.requires("pair-spaces") or [] if "extra" not in r}


def pyproject_dependencies() -> list[str]:
    return list(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])


def project_name(requirement: str) -> str:
    """The requirement's project name, normalized as PEP 503 says (`ruamel.yaml` = `ruamel-yaml`)."""
    return re.sub(r"[-_.]+", "-", re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]).lower()


def download(broker: InProcessBroker) -> bytes:
    response = broker.http.get("/download/pair.whl")
    assert response.status_code == 200
    assert response.headers["content-disposition"] == f'attachment; filename="{WHEEL_NAME}"'
    return bytes(response.content)


def test_install_sh_is_served_as_a_shell_script(broker: InProcessBroker) -> None:
    response = broker.http.get("/install.sh")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/x-shellscript")
    assert response.content == INSTALL_SH.read_bytes()


def test_install_sh_comes_from_the_wheel_else_the_checkout(tmp_path: Path) -> None:
    package = tmp_path / "site" / "broker"
    (package / "static").mkdir(parents=True)
    with pytest.raises(Problem) as missing:
        downloads.install_script_path(package)
    assert missing.value.status == 404
    (tmp_path / "site" / "install.sh").write_text("checkout")
    assert downloads.install_script_path(package) == tmp_path / "site" / "install.sh"
    (package / "static" / "install.sh").write_text("shipped")
    assert downloads.install_script_path(package) == package / "static" / "install.sh"


def test_the_wheel_is_complete_consistent_and_cached(broker: InProcessBroker) -> None:
    data = download(broker)
    assert download(broker) == data
    assert broker.http.get("/download/pair.whl").headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    with zipfile.ZipFile(io.BytesIO(data)) as wheel:
        names = wheel.namelist()
        dist_info = f"pair_spaces-{pair.__version__}.dist-info"
        record = wheel.read(f"{dist_info}/RECORD").decode().splitlines()
        listed = {}
        for line in record:
            name, digest, size = line.rsplit(",", 2)
            listed[name] = (digest, size)
        assert set(listed) == set(names)
        for name in names:
            if name == f"{dist_info}/RECORD":
                assert listed[name] == ("", "")
                continue
            content = wheel.read(name)
            expected = "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
            assert listed[name] == (expected, str(len(content))), name
        metadata = Parser().parsestr(wheel.read(f"{dist_info}/METADATA").decode())
        wheel_file = wheel.read(f"{dist_info}/WHEEL").decode()
        entry_points = wheel.read(f"{dist_info}/entry_points.txt").decode()
    assert metadata["Name"] == "pair-spaces"
    assert metadata["Version"] == pair.__version__
    requires = metadata.get_all("Requires-Dist") or []
    assert set(requires) == base_dependencies()  # the CLI's, none of the broker extra's
    assert {project_name(r) for r in requires} == {project_name(r) for r in pyproject_dependencies()}
    assert "Tag: py3-none-any" in wheel_file and "Root-Is-Purelib: true" in wheel_file
    assert "pair = pair.__main__:main" in entry_points and "pair-broker" not in entry_points
    assert {"pair/__init__.py", "pair/verify.py", "pair/py.typed", "pair/container/launcher.py"} <= set(names)
    assert not [n for n in names if n.startswith("broker/") or "__pycache__" in n or n.endswith(".pyc")]


def test_base_requirements_drop_every_extra() -> None:
    assert downloads.base_requirements(
        [
            "typer>=0.15",
            'starlette>=0.40; extra == "broker"',
            "uvloop>=0.19; sys_platform != 'win32' and extra == 'broker'",
            "tomli; python_version < '3.11'",
        ]
    ) == ["typer>=0.15", "tomli; python_version < '3.11'"]


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_pip_installs_the_downloaded_wheel_into_a_fresh_venv(broker: InProcessBroker, tmp_path: Path) -> None:
    wheel = tmp_path / WHEEL_NAME
    wheel.write_bytes(download(broker))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    installed = subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    version = subprocess.run([str(env_dir / "bin" / "pair"), "--version"], capture_output=True, text=True, check=False)
    assert version.returncode == 0, version.stderr
    assert version.stdout == f"pair {pair.__version__}\n"
    no_broker = subprocess.run(
        [str(env_dir / "bin" / "python"), "-c", "import broker"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert no_broker.returncode == 1 and "ModuleNotFoundError" in no_broker.stderr
