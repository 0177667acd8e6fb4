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

from pair.api import models as m
from pair.api.grammar import (
    KNOWN_STATES,
    NAME_RULE,
    STATE_RE,
    Invalid,
    host_key_problem,
    is_email,
    is_space_id,
    is_space_name,
    label_problem,
    shown,
)
from pair.printable import printable

__all__ = [
    "check",
    "check_facts",
    "check_path",
    "grammar_refusal",
    "message_refusal",
    "refusal",
    "space_from_json",
    "space_problem",
    "value_text",
]

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


def check_facts(facts: m.ContainerFacts) -> None:
    """Raise Invalid for the first of a container's facts that does not fit its type's grammar
    (pair.api.models.FACT_GRAMMAR: the login user, the host keys, the host name, the pair version,
    the workspace folder, CPUs and bytes), in the type's sentence ("'VALUE' is not WHAT." and its
    rule, as `check` says), then for a host key that is not a key of its type (pair.sshkeys, which
    no pattern can say: grammar.host_key_problem). Empty text means "not reported" and passes."""
    for name, kind in m.FACT_GRAMMAR.items():
        check(kind, getattr(facts, name))
    for entry in facts.host_keys:
        problem = host_key_problem(entry)
        if problem:
            raise Invalid(
                f"The container reported a bad SSH host key: {problem}.",
                "Report the first two fields of sshd's host key .pub file, one key per entry.",
            )


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


def space_problem(space: m.Space) -> str | None:
    """Why the CLI must not use a Space the broker sent (it would reach an ssh config, known_hosts
    or an ssh argument), or None: its id, name, owner and container facts are all checked."""
    if not is_space_id(space.id):
        return f"its id {shown(space.id)} is not an sp_… id"
    if not is_space_name(space.name):
        return f"its name {shown(space.name)} breaks the Space name rule ({NAME_RULE})"
    if not is_email(space.owner):
        return f"its owner {shown(space.owner)} is not an email address"
    if space.container is not None:
        try:
            check_facts(space.container)
        except Invalid as exc:
            return f"its container's facts: {exc.message.rstrip('.')}"
    return None


def space_from_json(item: bytes) -> m.Space:
    """One Space of the broker's list (its JSON `item`), decoded and checked on its own so that
    one bad Space never breaks the others (issue 17). A `state` this version does not know but
    that fits STATE_RE (a newer broker's) is kept as it is; readiness treats it as not running.

    Raises Invalid naming the Space (id and name escaped, as far as they could be read) and why:
    not an object, a field of the wrong type or shape (msgspec's words), or space_problem."""
    try:
        fields: Any = msgspec.json.decode(item)
    except msgspec.DecodeError as exc:
        raise Invalid(f"Left out a Space the broker sent: it is not JSON ({printable(str(exc))}).") from exc
    if not isinstance(fields, dict):
        raise Invalid(f"Left out a Space the broker sent: it is a JSON {type(fields).__name__}, not an object.")
    ident = f"({shown(str(fields.get('id', '?')))}, {shown(str(fields.get('name', '?')))})"
    state = fields.get("state")
    newer = isinstance(state, str) and state not in KNOWN_STATES and STATE_RE.fullmatch(state) is not None
    try:
        space = msgspec.convert({**fields, "state": "created"} if newer else fields, type=m.Space)
    except msgspec.ValidationError as exc:
        raise Invalid(f"Left out a Space the broker sent {ident}: {printable(str(exc))}.") from exc
    if newer:  # Structs do not check on replace: the unknown state is carried as it is
        space = msgspec.structs.replace(space, state=state)
    if problem := space_problem(space):
        raise Invalid(f"Left out a Space the broker sent {ident}: {problem}.")
    return space
