"""Package boundaries: the CLI never depends on the broker or its dependencies, and stays light to
import; the broker takes from `pair` only what docs/architecture.md allows; no import cycles;
the rooms table of docs/architecture.md says what each room imports."""

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


def module_name(path: Path, root: Path = REPO) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_imports(path: Path, known: set[str], root: Path = REPO) -> set[str]:
    """The modules of `known` that the file at `path` imports, anywhere in it: inside functions
    too (deferring an import hides a circle from Python, not from the design: `accounts` and
    `spaces` once imported each other that way) and under `if TYPE_CHECKING:`. `from P import N`
    names the module P.N when there is one, else P; a module's parent packages are imported
    before it, so they count too, except the importer's own (already importing when it runs)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    me = module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    named: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            named.update(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names)
    mine = {me.rsplit(".", i)[0] for i in range(me.count(".") + 1)}
    out: set[str] = set()
    for name in named:
        parts = name.split(".")
        out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {name for name in out if name in known and name not in mine}


def import_cycles(packages: list[Path], root: Path = REPO) -> list[list[str]]:
    """Every set of modules that import each other, directly or round a circle (Tarjan's
    strongly connected components of the import graph), each sorted."""
    files = {module_name(p, root): p for package in packages for p in package.rglob("*.py")}
    graph = {name: module_imports(path, set(files), root) for name, path in files.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def connect(node: str) -> None:  # recursion depth is the import chain's length: small
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph[node]:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return cycles


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


def test_there_is_no_import_cycle_in_pair_or_broker() -> None:
    assert import_cycles([REPO / "pair", REPO / "broker"]) == []


def test_the_cycle_check_finds_a_cycle_round_a_package(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import thing\n")
    (pkg / "sub" / "__init__.py").write_text("from pkg.sub.b import thing\n")
    (pkg / "sub" / "b.py").write_text(
        "from __future__ import annotations\nfrom typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from .. import a\n"
    )
    (pkg / "c.py").write_text("import pkg.d\n")
    (pkg / "d.py").write_text("def later():\n    from pkg import c\n")  # deferred, still a circle
    (pkg / "e.py").write_text("from pkg import c\n")
    assert import_cycles([pkg], tmp_path) == [["pkg.a", "pkg.sub", "pkg.sub.b"], ["pkg.c", "pkg.d"]]


# What the broker may take from `pair` (docs/architecture.md, Packages): the wire contract and the
# small neutral modules both sides need, never the CLI, the container side or the project editors.
BROKER_MAY_IMPORT = ("pair.api", "pair.sshkeys", "pair.files", "pair.durations", "pair.runner", "pair.printable")


def pair_imports_outside(allowed: tuple[str, ...], files: list[Path], pair_modules: set[str]) -> set[str]:
    """`file: module` for every import of a `pair` module by `files` that `allowed` does not
    cover (a name and everything below it; `pair` itself, its version, is always allowed).
    Imports inside functions count: what is imported later is still taken."""
    offenders = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in pair_modules else node.module
                    for a in node.names
                ]
            for name in names:
                if name.startswith("pair.") and not any(name == m or name.startswith(m + ".") for m in allowed):
                    offenders.add(f"{path.name}: {name}")
    return offenders


def test_the_broker_takes_from_pair_only_what_the_architecture_allows() -> None:
    pair_modules = {module_name(p) for p in (REPO / "pair").rglob("*.py")}
    assert pair_imports_outside(BROKER_MAY_IMPORT, sorted((REPO / "broker").rglob("*.py")), pair_modules) == set()
    # the list is the documented one
    documented = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    broker_row = next(line for line in documented.splitlines() if line.startswith("| `broker` |"))
    assert set(re.findall(r"`(pair[a-z_.]*)`", broker_row.rsplit("|", 2)[1])) == {"pair", *BROKER_MAY_IMPORT}


def test_the_allow_list_check_finds_an_import_from_the_cli(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from pair import __version__, durations\nfrom pair.api import models\nimport pair.sshkeys\n"
        "def later():\n    from pair.cli import durations\n    from pair.cli.output import table\n"
    )
    modules = {
        "pair",
        "pair.durations",
        "pair.api",
        "pair.api.models",
        "pair.cli",
        "pair.cli.durations",
        "pair.cli.output",
        "pair.sshkeys",
    }
    assert pair_imports_outside(BROKER_MAY_IMPORT, [sample], modules) == {
        "sample.py: pair.cli.durations",
        "sample.py: pair.cli.output",
    }


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


# The rooms table (docs/architecture.md, "The broker's rooms"): its "may call" column is what each
# room imports, at any depth of the package and type-only imports too, besides this plumbing that
# every room may use (the doc says the same list in words).
PLUMBING = {"context", "store", "errors", "credentials", "names", "emails", "metrics"}


def rooms_table(doc: str) -> tuple[dict[tuple[str, ...], set[str]], set[str]]:
    """The rooms table of architecture.md: each row's modules (`bus`, `hub`, `links` share one)
    and the broker modules or packages its "may call" column names (`broker.apps` as `apps`;
    what a parenthesis adds, such as a function's name, is not a module); and the plumbing the
    text before the table names."""
    section = doc.split("### The broker's rooms", 1)[1].split("\n## ", 1)[0]
    intro, _, table = section.partition("| module | holds | may call |")
    plumbing_line = next(line for line in intro.split("\n\n") if "plumbing" in line)
    plumbing = {name.removeprefix("broker.") for name in re.findall(r"`([a-z_.]+)`", plumbing_line)}
    rows: dict[tuple[str, ...], set[str]] = {}
    for line in table.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        modules = tuple(re.findall(r"`([a-z_]+)`", cells[0]))
        calls = re.sub(r"\([^)]*\)", "", cells[-1])
        rows[modules] = {name.removeprefix("broker.") for name in re.findall(r"`([a-z_.]+)`", calls)}
    return rows, plumbing


def room_calls(modules: tuple[str, ...], root: Path = REPO) -> set[str]:
    """The broker modules and packages (`web`, `apps`, `store`: a package as one) that the room
    made of `modules` imports, besides the plumbing and itself."""
    files = {module_name(p, root): p for p in (root / "broker").rglob("*.py")}
    imported = set().union(*(module_imports(files[f"broker.{m}"], set(files), root) for m in modules))
    tops = {name.split(".")[1] for name in imported if name.count(".") >= 1}
    return tops - PLUMBING - set(modules)


def test_the_rooms_table_says_what_each_room_calls() -> None:
    rows, plumbing = rooms_table((REPO / "docs" / "architecture.md").read_text(encoding="utf-8"))
    assert plumbing == PLUMBING
    assert len(rows) > 15  # the parse found the table
    broker_modules = {p.stem for p in (REPO / "broker").glob("*.py")} | {
        p.name for p in (REPO / "broker").iterdir() if (p / "__init__.py").exists()
    }
    for modules, documented in rows.items():
        assert set(modules) <= broker_modules, modules
        assert documented <= broker_modules, (modules, documented)
    assert {modules: room_calls(modules) for modules in rows} == rows


def test_the_rooms_table_check_reads_a_row_and_its_imports(tmp_path: Path) -> None:
    doc = (
        "### The broker's rooms\n\nWords.\n\nBesides the plumbing every room may use: `context`, `store`, `errors`,"
        " `credentials`, `names`, `emails`, `metrics`.\n\n| module | holds | may call |\n|---|---|---|\n"
        "| `a`, `b` | things (`not_a_module`) | `c` (`to_wire`), `broker.apps` |\n| `c` | more | — |\n\n## Next\n"
    )
    rows, plumbing = rooms_table(doc)
    assert rows == {("a", "b"): {"c", "apps"}, ("c",): set()} and plumbing == PLUMBING
    broker = tmp_path / "broker"
    (broker / "apps").mkdir(parents=True)
    for name in ("__init__", "a", "b", "c", "context", "apps/__init__", "apps/hosts"):
        (broker / f"{name}.py").write_text("")
    (broker / "a.py").write_text("from broker import b, context\nfrom broker.apps import hosts\n")
    (broker / "b.py").write_text("def later():\n    from broker.c import thing\n")
    assert room_calls(("a", "b"), tmp_path) == {"c", "apps"}
    assert room_calls(("c",), tmp_path) == set()
