"""What a venv made by `make run` lacks: the modules of the `test` extra's distributions that the
package with its `broker` extra does not bring (pyproject.toml; installed metadata for the closure).
`only_run_deps(env)` makes a Python started with that environment refuse to import them."""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: pip's own dependency
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
SITE = Path(__file__).resolve().parent / "only_run_deps"


def _name(requirement: str) -> str:
    return re.split(r"[\s;<>=!~\[(]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _closure(names: list[str]) -> set[str]:
    """Every distribution `names` need, following installed metadata (extras' requirements left out)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo += [_name(r) for r in requires if "extra ==" not in r]
    return seen


def blocked_modules() -> list[str]:
    """Top-level module names of the test extra's distributions outside `.[broker]`'s closure."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    run = _closure([_name(r) for r in project["dependencies"] + extras["broker"]])
    test_only = _closure([_name(r) for r in extras["test"]]) - run
    owners = metadata.packages_distributions()
    modules = {m for m, dists in owners.items() if all(_name(d) in test_only for d in dists)}
    assert "pytest" in modules and "hypothesis" in modules, modules
    return sorted(modules)


def only_run_deps(env: dict[str, str]) -> dict[str, str]:
    """`env` for a Python that imports only what a `make run` venv holds (PYTHONPATH's sitecustomize)."""
    path = env.get("PYTHONPATH", "")
    blocked = ",".join(blocked_modules())
    return {**env, "PYTHONPATH": f"{SITE}{':' + path if path else ''}", "PAIR_BLOCKED_MODULES": blocked}
