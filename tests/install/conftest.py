"""Fixtures for the installer tests: the repository's files, a wheel built from it, tokens."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALL_SH = REPO / "install.sh"


@pytest.fixture(scope="session")
def repo_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip wheel --no-deps .`: the wheel a release would publish, built from this checkout."""
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--disable-pip-version-check",
            str(REPO),
            "-w",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    [wheel] = out.glob("pair_spaces-*.whl")
    return wheel


def jwt(claims: dict[str, object] | str, signature: bytes = b"s" * 64) -> str:
    """A token of the Space token's shape (unsigned: install.sh and its parser never verify);
    `claims` as a dict (written compact, as the broker's msgspec does) or as the JSON text itself."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    text = claims if isinstance(claims, str) else json.dumps(claims, separators=(",", ":"))
    header = json.dumps({"alg": "EdDSA", "typ": "JWT"}).encode()
    return ".".join((b64(header), b64(text.encode()), b64(signature)))
