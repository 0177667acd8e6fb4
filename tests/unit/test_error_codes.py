"""Error codes are a closed, documented set (pair.api.models.ErrorCode): every Problem the broker
raises names one, each one is raised somewhere, and docs/architecture.md lists exactly them."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import get_args

from pair.api.models import ErrorCode

REPO = Path(__file__).resolve().parents[2]
CODES = set(get_args(ErrorCode))
# Where codes are decided: the broker, and the refusal sentences the relay shares with the CLI.
SOURCES = [*sorted((REPO / "broker").rglob("*.py")), REPO / "pair" / "api" / "readiness.py"]


def problem_codes(path: Path) -> list[tuple[int, ast.expr | None]]:
    """(line, the code argument) of every `Problem(...)` built in `path`; None if it names none."""
    found: list[tuple[int, ast.expr | None]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
        if name != "Problem":
            continue
        code = next((k.value for k in node.keywords if k.arg == "code"), None)
        if code is None and len(node.args) >= 4:
            code = node.args[3]
        if code is None:
            code = next((a.value for a in node.args if isinstance(a, ast.Starred)), None)  # Problem(409, *refusal)
        found.append((node.lineno, code))
    return found


def test_every_problem_names_a_code_from_the_set() -> None:
    seen = 0
    for path in SOURCES:
        for line, code in problem_codes(path):
            seen += 1
            where = f"{path.relative_to(REPO)}:{line}"
            assert code is not None, f"{where}: a Problem without a code"
            if isinstance(code, ast.Constant):
                assert code.value in CODES, f"{where}: {code.value!r} is not a pair.api.models.ErrorCode"
    assert seen > 30  # the walk really sees the broker's Problems


def test_every_code_is_raised_somewhere() -> None:
    """No dead members: each code appears as a string in the code that decides errors."""
    strings = {
        node.value
        for path in SOURCES
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }
    assert CODES - strings == set()


def test_the_documented_codes_are_exactly_the_set() -> None:
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("### Error codes\n", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    documented = [code for row in rows for code in re.findall(r"`([a-z_]+)`", row.split("|")[1])]
    assert sorted(documented) == sorted(CODES)  # each once, none missing, none extra
