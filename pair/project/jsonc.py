"""Editing JSON with comments (JSONC, the syntax of devcontainer.json) without touching anything
but the inserted text: every comment, the key order, the indentation and the trailing commas stay
byte for byte.

The method is the one of Microsoft's jsonc-parser (what VS Code and the devcontainer CLI use for
`modify` + `applyEdits`): a tokenizer that keeps each token's offsets, a parser into a tree of
those offsets, and edits that are (offset, length, text) triples applied to the original string.
After editing, `apply` parses the result again and checks that it means exactly what was intended
and still holds every comment of the original, in order, so a defect here cannot write a wrong file.

No Python library did this when it was written (2026-11), which is why it is done here:
- json5, commentjson, json-with-comments, jsonc-parser (PyPI) parse only: comments are lost on dump.
- json-five round-trips through a model, but installs under the import name `json5`, replacing the
  json5 package (which jupyterlab and others depend on), and appending a key to its model moves a
  comment that followed the last key's comma behind the new key.
- json4humans rejects trailing commas, which devcontainer.json allows; json5kit knows only `//`.
- jsonc-edit drives Microsoft's parser through a Node.js daemon that it npm-installs on first use.

Grammar: JSON (RFC 8259) plus `//` line comments, `/* */` block comments and a trailing comma in
objects and arrays, as the devcontainer spec's JSON Schema declares (`allowComments`,
`allowTrailingCommas`); a UTF-8 byte order mark is skipped.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r\n]+)
    | (?P<line_comment>//[^\r\n]*)
    | (?P<block_comment>/\*.*?\*/)
    | (?P<string>"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*")
    | (?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
    | (?P<literal>true|false|null)
    | (?P<punct>[{}\[\]:,])
    """,
    re.VERBOSE | re.DOTALL,
)
_WORD_END = re.compile(r"[A-Za-z0-9_$]")  # `nullx` or `12abc` is not a token followed by another


class JsoncError(ValueError):
    """The text is not JSON with comments; `line` and `column` count from 1."""

    def __init__(self, message: str, text: str, offset: int) -> None:
        self.line = text.count("\n", 0, offset) + 1
        self.column = offset - (text.rfind("\n", 0, offset) + 1) + 1
        super().__init__(f"{message} at line {self.line}, column {self.column}")
        self.reason = message


@dataclass(frozen=True)
class Token:
    kind: str  # "comment", "string", "number", "literal", or the punctuation character itself
    start: int
    end: int


@dataclass
class Member:
    key: str
    key_start: int
    value: Node


@dataclass
class Node:
    """A value: `start`/`end` are the offsets of its text; containers also know their closing token."""

    kind: str  # "object", "array", "string", "number", "literal"
    start: int
    end: int
    members: list[Member] = field(default_factory=list)  # objects, in document order
    items: list[Node] = field(default_factory=list)  # arrays
    trailing_comma: bool = False
    close_index: int = -1  # index of the `}` / `]` token in Document.tokens

    def member(self, key: str) -> Member | None:
        """The member named `key` (the last one if the key repeats, as JSON parsers read it)."""
        found = [m for m in self.members if m.key == key]
        return found[-1] if found else None


@dataclass
class Document:
    text: str
    tokens: list[Token]  # comments included, whitespace not
    root: Node

    def comments(self) -> list[str]:
        return [self.text[t.start : t.end] for t in self.tokens if t.kind == "comment"]


def tokenize(text: str) -> list[Token]:
    """Every token but whitespace, with its offsets. Raises JsoncError at the first bad character."""
    tokens: list[Token] = []
    pos = 1 if text.startswith("\ufeff") else 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            if text.startswith("/*", pos):
                raise JsoncError("an unterminated block comment", text, pos)
            if text[pos] == '"':
                raise JsoncError("an unterminated or invalid string", text, pos)
            raise JsoncError(f"unexpected {text[pos]!r}", text, pos)
        kind = m.lastgroup
        assert kind is not None
        if kind in ("number", "literal") and m.end() < len(text) and _WORD_END.match(text, m.end()):
            raise JsoncError(f"unexpected {text[m.start() : m.end() + 1]!r}", text, m.start())
        if kind != "ws":
            if kind.endswith("comment"):
                kind = "comment"
            elif kind == "punct":
                kind = m.group()
            tokens.append(Token(kind, m.start(), m.end()))
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.code = [i for i, t in enumerate(self.tokens) if t.kind != "comment"]  # indexes of non-comments
        self.i = 0  # position in self.code

    def peek(self) -> Token | None:
        return self.tokens[self.code[self.i]] if self.i < len(self.code) else None

    def take(self, *kinds: str) -> tuple[Token, int]:
        """The next token, which must be of one of `kinds`, and its index in self.tokens."""
        token = self.peek()
        if token is None or token.kind not in kinds:
            wanted = " or ".join(k if k == "string" else f"'{k}'" for k in kinds)
            found = "the end of the text" if token is None else repr(self.text[token.start : token.end])
            raise JsoncError(
                f"expected {wanted}, found {found}", self.text, len(self.text) if token is None else token.start
            )
        index = self.code[self.i]
        self.i += 1
        return token, index

    def separator(self, close: str) -> bool:
        """After a member or an item: True at the closing token; else takes the comma."""
        token = self.peek()
        if token is not None and token.kind == close:
            return True
        self.take(",", close)
        return False

    def value(self) -> Node:
        token = self.peek()
        if token is not None and token.kind == "{":
            return self.obj()
        if token is not None and token.kind == "[":
            return self.array()
        if token is None or token.kind not in ("string", "number", "literal"):
            found = "the end of the text" if token is None else repr(self.text[token.start : token.end])
            raise JsoncError(
                f"expected a value, found {found}", self.text, len(self.text) if token is None else token.start
            )
        self.i += 1
        return Node(token.kind, token.start, token.end)

    def obj(self) -> Node:
        opening, _ = self.take("{")
        node = Node("object", opening.start, opening.end)
        while (token := self.peek()) is not None and token.kind != "}":
            key, _ = self.take("string")
            self.take(":")
            node.members.append(Member(json.loads(self.text[key.start : key.end]), key.start, self.value()))
            if self.separator("}"):
                break
            node.trailing_comma = (token := self.peek()) is not None and token.kind == "}"
        closing, node.close_index = self.take("}")
        node.end = closing.end
        return node

    def array(self) -> Node:
        opening, _ = self.take("[")
        node = Node("array", opening.start, opening.end)
        while (token := self.peek()) is not None and token.kind != "]":
            node.items.append(self.value())
            if self.separator("]"):
                break
            node.trailing_comma = (token := self.peek()) is not None and token.kind == "]"
        closing, node.close_index = self.take("]")
        node.end = closing.end
        return node


def parse(text: str) -> Document:
    """Parse JSONC into a Document. Raises JsoncError (with line and column) on invalid text."""
    parser = _Parser(text)
    try:
        root = parser.value()
    except RecursionError:
        raise JsoncError("values nested too deeply", text, 0) from None
    extra = parser.peek()
    if extra is not None:
        raise JsoncError("unexpected text after the end of the JSON value", text, extra.start)
    return Document(text, parser.tokens, root)


def value_of(doc: Document, node: Node | None = None) -> Any:
    """The Python value of `node` (default: the root): dict, list, str, int, float, bool or None."""
    node = doc.root if node is None else node
    if node.kind == "object":
        return {m.key: value_of(doc, m.value) for m in node.members}
    if node.kind == "array":
        return [value_of(doc, item) for item in node.items]
    return json.loads(doc.text[node.start : node.end])


def loads(text: str) -> Any:
    """Like json.loads, for JSONC."""
    return value_of(parse(text))


# --------------------------------------------------------------------------------------------------
# Edits


@dataclass(frozen=True)
class Edit:
    """Replace `length` characters at `offset` with `text`."""

    offset: int
    length: int
    text: str


def newline_of(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"


def _line_start(text: str, offset: int) -> int:
    return max(text.rfind("\n", 0, offset), text.rfind("\r", 0, offset)) + 1


def line_indent(text: str, offset: int) -> str:
    """The whitespace that starts the line holding `offset`."""
    start = _line_start(text, offset)
    end = start
    while end < len(text) and text[end] in " \t":
        end += 1
    return text[start:end]


def _starts_line(text: str, offset: int) -> bool:
    return text[_line_start(text, offset) : offset].strip(" \t") == ""


def _objects(node: Node) -> Iterator[Node]:
    """The objects in `node`, outermost first."""
    if node.kind == "object":
        yield node
    for child in [m.value for m in node.members] + node.items:
        yield from _objects(child)


def indent_unit(doc: Document) -> str:
    """One level of indentation as the file writes it: the step from an object's line to its first
    member that starts a line of its own (the root's, if it does); else a tab, as the devcontainer
    templates use."""
    for obj in _objects(doc.root):
        for member in obj.members:
            if _starts_line(doc.text, member.key_start):
                outer, inner = line_indent(doc.text, obj.start), line_indent(doc.text, member.key_start)
                if inner.startswith(outer) and len(inner) > len(outer):
                    return inner[len(outer) :]
                break
    return "\t"


def is_one_line(text: str) -> bool:
    return "\n" not in text and "\r" not in text


def is_compact(doc: Document) -> bool:
    """A document written on one line (`{"a": 1}`): additions stay on that line."""
    root = doc.root
    return bool(root.members or root.items) and is_one_line(doc.text.strip())


def render(value: Any, indent: str | None = None, unit: str = "\t", newline: str = "\n") -> str:
    """`value` as JSON text: on one line when `indent` is None, else over several lines whose
    continuation lines start with `indent` (one level is `unit`)."""
    if indent is None:
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, indent=unit, ensure_ascii=False).replace("\n", newline + indent)


def insert_members(doc: Document, obj: Node, members: list[tuple[str, Any]]) -> list[Edit]:
    """Edits that append `"key": value` pairs to the object `obj`, after its last member and any
    comments that follow it, in the object's own style: each on a new line at its members'
    indentation (or inline in a one-line object), a trailing comma kept where there was one."""
    assert obj.kind == "object"
    if not members:
        return []
    text, newline, unit = doc.text, newline_of(doc.text), indent_unit(doc)
    close = doc.tokens[obj.close_index]
    after = doc.tokens[obj.close_index - 1].end  # the end of the last token inside: a value, a comma, a comment
    between = text[after : close.start]  # only whitespace
    last = obj.members[-1] if obj.members else None
    comma = "," if last is not None and not obj.trailing_comma else ""  # after the last member's value
    edits: list[Edit] = []
    if comma and last is not None and last.value.end != after:  # comments follow it: the comma goes before them
        edits.append(Edit(last.value.end, 0, comma))
        comma = ""
    trailing = "," if obj.trailing_comma else ""

    if is_compact(doc) or (last is not None and is_one_line(text[obj.start : obj.end])):
        # {"a": 1} -> {"a": 1, "key": value}
        pairs = ", ".join(f"{render(k)}: {render(v)}" for k, v in members)
        lead = "" if after == obj.start + 1 else " "
        edits.append(Edit(after, len(between), comma + lead + pairs + trailing))
        return edits
    outer = line_indent(text, obj.start)
    inner = line_indent(text, last.key_start) if last and _starts_line(text, last.key_start) else outer + unit
    addition = ",".join(f"{newline}{inner}{render(k)}: {render(v, inner, unit, newline)}" for k, v in members)
    if "\n" in between or "\r" in between:
        edits.append(Edit(after, 0, comma + addition + trailing))
    else:  # the closing brace shares the line: give it a line of its own
        edits.append(Edit(after, len(between), comma + addition + trailing + newline + outer))
    return edits


def _reindented(doc: Document, node: Node, unit: str) -> str:
    """The text of `node` with one more level of indentation on each of its lines after the first:
    only the whitespace between tokens changes, never a comment or a string."""
    inside = [t for t in doc.tokens if node.start <= t.start and t.end <= node.end]
    parts = []
    for token, following in itertools.pairwise(inside):
        parts.append(doc.text[token.start : token.end])
        parts.append(doc.text[token.end : following.start].replace("\n", "\n" + unit))
    parts.append(doc.text[inside[-1].start : inside[-1].end])
    return "".join(parts)


def wrap_in_object(doc: Document, node: Node, existing_key: str, key: str, value: Any) -> list[Edit]:
    """An edit that turns `node` into `{"existing_key": <node's text>, "key": value}` over several
    lines; the node's text is kept, one level deeper."""
    text, newline, unit = doc.text, newline_of(doc.text), indent_unit(doc)
    if is_compact(doc):
        old = text[node.start : node.end]
        wrapped = f"{{{render(existing_key)}: {old}, {render(key)}: {render(value)}}}"
        return [Edit(node.start, node.end - node.start, wrapped)]
    outer = line_indent(text, node.start)
    inner = outer + unit
    wrapped = (
        f"{{{newline}{inner}{json.dumps(existing_key, ensure_ascii=False)}: {_reindented(doc, node, unit)},"
        f"{newline}{inner}{json.dumps(key, ensure_ascii=False)}: {render(value, inner, unit, newline)}"
        f"{newline}{outer}}}"
    )
    return [Edit(node.start, node.end - node.start, wrapped)]


class EditCheckFailed(AssertionError):
    """The edited text does not mean what was intended, or lost a comment: a defect in this module."""


def apply(doc: Document, edits: Iterable[Edit], expected: Any) -> str:
    """Apply `edits` to the document's text and check the result: it parses, its value equals
    `expected` (in key order too), and it holds every comment of the original, in order.
    Raises EditCheckFailed otherwise."""
    text = doc.text
    ordered = sorted(edits, key=lambda e: (e.offset, e.length))
    for a, b in itertools.pairwise(ordered):
        if a.offset + a.length > b.offset:
            raise EditCheckFailed(f"overlapping edits at {a.offset} and {b.offset}")
    for edit in reversed(ordered):
        text = text[: edit.offset] + edit.text + text[edit.offset + edit.length :]
    try:
        result = parse(text)
    except JsoncError as exc:
        raise EditCheckFailed(f"the edited text does not parse: {exc}") from exc
    got = value_of(result)
    if got != expected or json.dumps(got) != json.dumps(expected):
        raise EditCheckFailed("the edited text does not hold the intended value")
    before, after = doc.comments(), iter(result.comments())
    if not all(any(c == d for d in after) for c in before):
        raise EditCheckFailed("the edit lost a comment")
    return text
