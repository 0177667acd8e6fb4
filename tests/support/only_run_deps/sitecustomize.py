"""Loaded by Python at start-up when this folder is on PYTHONPATH: makes the modules named in
$PAIR_BLOCKED_MODULES (comma-separated top-level names) unimportable, as in a venv that
`make run` made (`.[broker]`, without the test extra). tests/support/run_venv.py sets it."""

from __future__ import annotations

import os
import sys
from importlib.abc import MetaPathFinder

_BLOCKED = frozenset(filter(None, os.environ.get("PAIR_BLOCKED_MODULES", "").split(",")))


class _Blocker(MetaPathFinder):
    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if fullname.split(".")[0] in _BLOCKED:
            raise ModuleNotFoundError(f"No module named {fullname!r} (not in a `make run` venv)", name=fullname)
        return None


sys.meta_path.insert(0, _Blocker())
