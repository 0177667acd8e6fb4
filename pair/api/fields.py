"""A request's fields checked against their types' grammar, refused in the words the types declare.

The wire types (pair.api.models) carry each field's grammar as msgspec constraints (pattern,
length, bounds), so msgspec refuses a bad value wherever a body is decoded or converted: the
broker's JSON endpoints (broker.http), the CLI before it sends (pair.api.client), the broker's
own entries that take the same values (its web forms, `pair-broker`). msgspec's own words name a
regex; `refusal` turns them into the sentence the field's type declares (models.grammar_meta):
"'VALUE' is not WHAT." and the rule as the hint, the value bounded and escaped (grammar.shown).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import msgspec

from pair.api.grammar import Invalid, label_problem, shown
from pair.printable import printable

__all__ = ["check", "check_path", "grammar_refusal", "message_refusal", "refusal", "value_text"]

# msgspec ends a refusal inside a document with where: " - at `$.share_with[0]`".
_WHERE = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_STEP = re.compile(r"\.(?P<key>[A-Za-z_][A-Za-z0-9_]*)|\[(?P<index>\d+)\]")

# Grammars whose refusal can say more than "is not": which character, or how long (by `what`).
EXPLAINED: dict[str, Callable[[str], str | None]] = {"a port label": label_problem}


def _steps(message: str) -> list[str | int] | None:
    found = _WHERE.search(message)
    if found is None:
        return []
    path = found.group("path")
    steps: list[str | int] = []
    at = 0
    for step in _STEP.finditer(path):
        if step.start() != at:
            return None
        steps.append(step.group("key") if step.group("key") is not None else int(step.group("index")))
        at = step.end()
    return steps if at == len(path) else None


def _rule(info: Any, steps: list[str | int]) -> dict[str, Any] | None:
    """The grammar (`what`, `rule`) of the field at `steps` in the type `info`
    (msgspec.inspect), or None when that field declares none."""
    for step in steps:
        info = _unwrap(info, step)
        if info is None:
            return None
    return _grammar(info)


def _grammar(info: Any) -> dict[str, Any] | None:
    if isinstance(info, msgspec.inspect.UnionType):
        for option in info.types:
            found = _grammar(option)
            if found is not None:
                return found
        return None
    if isinstance(info, msgspec.inspect.Metadata) and info.extra and "what" in info.extra:
        return {"what": info.extra["what"], "rule": (info.extra_json_schema or {}).get("description", "")}
    return None


def _unwrap(info: Any, step: str | int) -> Any:
    if isinstance(info, msgspec.inspect.Metadata):
        return _unwrap(info.type, step)
    if isinstance(info, msgspec.inspect.UnionType):
        for option in info.types:
            found = _unwrap(option, step)
            if found is not None:
                return found
        return None
    if isinstance(step, str) and isinstance(info, msgspec.inspect.StructType):
        return next((f.type for f in info.fields if f.encode_name == step), None)
    if isinstance(step, int) and isinstance(info, msgspec.inspect.ListType):
        return info.item_type
    return None


def _value_at(value: Any, steps: list[str | int]) -> Any:
    for step in steps:
        if isinstance(step, str) and isinstance(value, dict):
            value = value.get(step)
        elif isinstance(step, int) and isinstance(value, list) and step < len(value):
            value = value[step]
        else:
            return None
    return value


def value_text(value: Any) -> str:
    """`value` as a refusal quotes it: a string escaped and cut (grammar.shown), anything else
    as its JSON, cut the same way."""
    if isinstance(value, str):
        return shown(value)
    return shown(msgspec.json.encode(value).decode())[1:-1]


def refusal(kind: Any, exc: msgspec.ValidationError, value: Any) -> Invalid | None:
    """The sentence for msgspec's refusal `exc` of `value` (the document as plain JSON values:
    dicts, lists, strings, numbers) as the type `kind`: "'VALUE' is not WHAT." with the field's
    rule as the hint, when the refused field declares its grammar (models.grammar_meta); None
    when it does not (a missing field, a wrong JSON type where no grammar is declared)."""
    steps = _steps(str(exc))
    if steps is None:
        return None
    rule = _rule(msgspec.inspect.type_info(kind), steps)
    if rule is None:
        return None
    refused = _value_at(value, steps)
    explain = EXPLAINED.get(rule["what"])
    why = explain(refused) if explain is not None and isinstance(refused, str) else None
    return Invalid(why or f"{value_text(refused)} is not {rule['what']}.", rule["rule"])


# msgspec quotes a refused value it names (an enum's, a tag's) in single quotes, some unescaped.
_QUOTED = re.compile(r"'.*'", re.DOTALL)


def message_refusal(kind: Any, exc: msgspec.DecodeError, frame: str | bytes) -> str:
    """Why the message `frame` (JSON) does not decode as the type `kind`, in one sentence of
    printable text: the field's grammar (`refusal`: "'VALUE' is not WHAT.") when it declares
    one; else msgspec's words, any value they quote replaced by the value escaped and cut
    (value_text), then where (`at $.heartbeat.state`). For text a peer sent that ends up in a
    close frame or a log line: raw msgspec text would carry whatever the peer put in a tag or an
    enum's value (newlines, bidi controls, kilobytes)."""
    if not isinstance(exc, msgspec.ValidationError):
        return f"{printable(str(exc))}."  # malformed JSON: msgspec names a byte offset, no text
    try:
        document: Any = msgspec.json.decode(frame)
    except msgspec.DecodeError:
        document = None
    said = refusal(kind, exc, document)
    if said is not None:
        return said.message
    words, _, where = str(exc).partition(" - at `")
    steps = _steps(str(exc)) or []
    refused = _value_at(document, steps)
    shown_value = value_text(refused) if isinstance(refused, (str, int, float)) else "'…'"
    words = _QUOTED.sub(lambda _: shown_value, words)
    at = f" (at {shown(where.removesuffix('`'), 40)[1:-1]})" if where else ""
    return f"{printable(words)}{at}."


def grammar_refusal(kind: Any, value: Any) -> Invalid | None:
    """Why `value` (a wire Struct built in code, or a plain value) breaks a grammar its type
    `kind` declares (`refusal`'s sentence), or None: it fits, or what it breaks declares no
    grammar (the broker then answers in its own words). What the CLI asks before it sends."""
    plain = msgspec.to_builtins(value)
    try:
        msgspec.convert(plain, kind)
    except msgspec.ValidationError as exc:
        return refusal(kind, exc, plain)
    return None


def check(kind: Any, value: Any) -> Any:
    """`value` (a wire Struct built in code, or a plain value) checked against the type `kind`,
    as the broker decodes it; returned as that type. Raises Invalid with the field's sentence
    (`refusal`), or msgspec's words when the field declares no grammar."""
    plain = msgspec.to_builtins(value)
    try:
        return msgspec.convert(plain, kind)
    except msgspec.ValidationError as exc:
        raise refusal(kind, exc, plain) or Invalid(f"The request is not valid: {exc}.") from exc


def check_path(kinds: dict[str, Any], params: dict[str, str]) -> None:
    """Each path parameter in `params` checked against its type in `kinds` (an endpoint's
    `path_types()`): strings as they are, integers only as plain decimal digits. Raises Invalid
    with the parameter's sentence (`refusal`)."""
    for name, text in params.items():
        kind = kinds.get(name)
        if kind is None:
            continue
        value: Any = text
        if _is_int(kind):
            value = int(text) if text.isascii() and text.isdigit() and len(text) <= 6 else text
        try:
            msgspec.convert(value, kind)
        except msgspec.ValidationError as exc:
            raise refusal(kind, exc, text) or Invalid(f"{shown(text)} is not a valid {name}.") from exc


@functools.cache
def _is_int(kind: Any) -> bool:
    """Whether the wire type `kind` is an integer (msgspec.inspect, once per type: it runs on
    every request with path parameters)."""
    info = msgspec.inspect.type_info(kind)
    target = info.type if isinstance(info, msgspec.inspect.Metadata) else info
    return isinstance(target, msgspec.inspect.IntType)
