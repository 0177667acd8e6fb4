"""Package boundaries: the CLI never depends on the broker or its dependencies, and stays light to import."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[2]
# websockets is not here: the CLI's proxy and agent use it.
BROKER_ONLY = {"starlette", "uvicorn", "pyjwt", "cryptography", "wsproto"}


def imported_modules(path: Path) -> set[str]:
    """Absolute module names a file imports (relative imports stay inside its own package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def modules_loaded_by(statement: str) -> set[str]:
    """Import in a fresh interpreter; return the top-level names of every module then loaded."""
    code = f"{statement}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    loaded: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return set(loaded)


def test_no_module_under_pair_imports_the_broker() -> None:
    files = sorted((REPO / "pair").rglob("*.py"))
    assert REPO / "pair" / "cli" / "app.py" in files  # the walk really sees the package
    offenders = {
        f"{path.relative_to(REPO)}: {module}"
        for path in files
        for module in imported_modules(path)
        if module == "broker" or module.startswith("broker.")
    }
    assert offenders == set()


def test_the_import_walk_detects_broker_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nfrom broker.store import Store\nif True:\n    import broker\nfrom . import x\n")
    assert imported_modules(sample) == {"os", "broker.store", "broker"}


def test_base_dependencies_exclude_the_broker_stack() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    base = {requirement_name(r) for r in project["dependencies"]}
    broker_extra = {requirement_name(r) for r in project["optional-dependencies"]["broker"]}

    assert base & BROKER_ONLY == set()
    assert {"typer", "httpx", "msgspec"} <= base
    # The parse is right: the broker extra is where they live.
    assert broker_extra >= BROKER_ONLY


# distribution -> module, where they differ
IMPORT_NAMES = {"pyjwt": "jwt", "prompt-toolkit": "prompt_toolkit", "ruamel-yaml": "ruamel"}


@pytest.mark.parametrize("extra", ["", "broker"])
def test_every_declared_dependency_is_imported(extra: str) -> None:
    """A dependency nothing imports is weight every install carries (questionary was one)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = project["optional-dependencies"][extra] if extra else project["dependencies"]
    imported = {
        module.split(".")[0]
        for package in ("pair", "broker")
        for path in (REPO / package).rglob("*.py")
        for module in imported_modules(path)
    }
    unused = [
        name
        for name in map(requirement_name, declared)
        if IMPORT_NAMES.get(name, name.replace("-", "_")) not in imported
        and name not in ("httptools", "uvloop")  # loaded by uvicorn's "auto" settings, never imported by name
    ]
    assert unused == []


def test_importing_the_cli_loads_no_broker_or_prompt_modules() -> None:
    loaded = modules_loaded_by("import pair.cli.app")
    assert "pair" in loaded
    assert "typer" in loaded
    forbidden = {"starlette", "uvicorn", "jwt", "cryptography", "broker", "prompt_toolkit"}
    assert loaded & forbidden == set()


def test_wire_models_do_not_import_httpx() -> None:
    loaded = modules_loaded_by("import pair.api.models")
    assert "msgspec" in loaded
    assert "httpx" not in loaded
