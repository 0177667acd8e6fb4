"""Hints by who asks (broker.errors.Problem.detail_for): only an admin is told to run a
`pair-broker` verb, which runs on the server; everyone else is told to ask an admin. A non-admin
sharing with an unknown group was told to run `pair-broker groups list`."""

from __future__ import annotations

import ast
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from broker.errors import Problem, invalid, not_found

REPO = Path(__file__).resolve().parents[2]
ADMIN_VERB = "pair-broker "
# What each helper takes as the hint for everyone, by position (keyword `detail` too).
DETAIL_POSITION = {"Problem": 2, "not_found": 1, "invalid": 1}


def _texts(node: ast.expr) -> list[str]:
    """The literal text in an expression: string constants, f-strings' literal parts, and both
    sides of a concatenation or a conditional."""
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def everyone_hints(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every literal in the hint for everyone of a Problem built in `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
        if name not in DETAIL_POSITION:
            continue
        detail = next((k.value for k in node.keywords if k.arg == "detail"), None)
        if detail is None and len(node.args) > DETAIL_POSITION[name]:
            detail = node.args[DETAIL_POSITION[name]]
        if detail is not None:
            found += [(node.lineno, text) for text in _texts(detail)]
    return found


def test_no_hint_for_everyone_in_the_broker_names_an_admin_verb() -> None:
    """Such a hint belongs in `admin_detail`. The module-level hints are checked too."""
    seen = 0
    for path in sorted((REPO / "broker").rglob("*.py")):
        for line, text in everyone_hints(path):
            seen += 1
            assert ADMIN_VERB not in text, f"{path.relative_to(REPO)}:{line}: {text!r} is for admins only"
    assert seen > 50  # the walk really sees the broker's hints
    from broker import ports, quotas

    assert ADMIN_VERB not in ports.off().detail and ADMIN_VERB in ports.off().admin_detail
    assert not any(ADMIN_VERB in hint for hint in quotas.HINTS.values())


@given(detail=st.text(), admin_detail=st.text(), is_admin=st.booleans())
def test_only_an_admin_gets_the_admin_hint_and_everyone_gets_one(
    detail: str, admin_detail: str, is_admin: bool
) -> None:
    for problem in (
        Problem(404, "Gone.", detail, "not_found", admin_detail=admin_detail),
        not_found("It", detail, admin_detail=admin_detail),
    ):
        shown = problem.detail_for(is_admin)
        if not is_admin:
            assert shown == detail
        else:
            assert shown == (admin_detail or detail)
    assert invalid("Bad.", detail).detail_for(is_admin) == detail  # no admin hint: the same for all
