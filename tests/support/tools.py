"""External tools the tests use. Missing one skips the test locally, and fails it under CI=true:
CI installs everything, so a skip there would hide a broken install step.

Importing this module does not import pytest (only a missing tool does): scripts/local-container.sh
uses the Debian-root support (tests/install/debian.py) from a `make run` venv, which has no pytest,
and checks its tools itself with `find_tool` first."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn


def find_tool(name: str) -> str | None:
    """The tool's path, or None. sshd lives in /usr/sbin, which a non-login PATH may lack."""
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")


def need_tool(name: str) -> str:
    path = find_tool(name)
    if path:
        return path
    _missing(f"{name} is not installed (scripts/test.sh installs it)")


def need_root() -> None:
    """Chroots, mount namespaces and package installs need root: skip locally, fail under CI=true."""
    if os.geteuid() == 0:
        return
    _missing("these tests need root (CI runs as root)", skip="needs root")


def _missing(message: str, skip: str = "") -> NoReturn:
    import pytest  # only here: see the module's docstring

    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(skip or message)
