"""External tools the tests use. Missing one skips the test locally, and fails it under CI=true:
CI installs everything, so a skip there would hide a broken install step."""

from __future__ import annotations

import os
import shutil

import pytest


def need_tool(name: str) -> str:
    # sshd lives in /usr/sbin, which a non-login PATH may lack.
    path = shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if path:
        return path
    message = f"{name} is not installed (scripts/test.sh installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def need_root() -> None:
    """Chroots, mount namespaces and package installs need root: skip locally, fail under CI=true."""
    if os.geteuid() == 0:
        return
    if os.environ.get("CI") == "true":
        pytest.fail("these tests need root (CI runs as root)")
    pytest.skip("needs root")
