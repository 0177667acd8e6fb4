"""The JSONC editor behind `pair spaces init` (pair/project/jsonc.py and devcontainer.py), checked
against an independent parser (json5) on hand-picked files and on generated ones: any JSON value,
written with comments, blank lines, odd indentation and trailing commas in random places."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import json5
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pair.api.errors import PairError
from pair.project import devcontainer, jsonc
from pair.project.devcontainer import COMMANDS, FEATURE_ID

START, ATTACH = COMMANDS["postStartCommand"], COMMANDS["postAttachCommand"]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def ordered(value: Any) -> str:
    """A value's JSON with its key order: equal only if the content and every object's order are."""
    return json.dumps(value, ensure_ascii=False)


def non_space(text: str) -> str:
    return re.sub(r"\s+", "", text)


def is_subsequence(small: str, big: str) -> bool:
    it = iter(big)
    return all(c in it for c in small)


# --------------------------------------------------------------------------------------------------
# Generated JSONC: a value, and its text with comments and whitespace in random places.

WHITESPACE = st.sampled_from(["", " ", "\n", "\n\t", "\n    ", "\t\t", "\n\n  ", "\r\n\t"])


class Writer:
    """Writes a value as JSONC, drawing the trivia between tokens; remembers its comments."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data
        self.comments: list[str] = []

    def trivia(self) -> str:
        parts = []
        for _ in range(self.data.draw(st.integers(0, 2))):
            kind = self.data.draw(st.sampled_from(["space", "line", "block", "multiline"]))
            marker = f"c{len(self.comments)}"
            if kind == "space":
                parts.append(self.data.draw(WHITESPACE))
                continue
            comment = {
                "line": f"// {marker} {{not: json}},",
                "block": f"/* {marker} */",
                "multiline": f"/*\n * {marker}\n */",
            }[kind]
            self.comments.append(comment)
            parts.append(comment + ("\n" if kind == "line" else ""))
        return "".join(parts)

    def trailing_comma(self, items: list[str]) -> str:
        with_comma: bool = bool(items) and self.data.draw(st.booleans())
        return "," if with_comma else ""

    def write(self, value: Any) -> str:
        t = self.trivia
        if isinstance(value, dict):
            items = [
                f"{t()}{json.dumps(k, ensure_ascii=False)}{t()}:{t()}{self.write(v)}{t()}" for k, v in value.items()
            ]
            return "{" + ",".join(items) + self.trailing_comma(items) + t() + "}"
        if isinstance(value, list):
            items = [f"{t()}{self.write(v)}{t()}" for v in value]
            return "[" + ",".join(items) + self.trailing_comma(items) + t() + "]"
        return json.dumps(value, ensure_ascii=False)


def document(data: st.DataObject, value: Any) -> tuple[str, list[str]]:
    writer = Writer(data)
    text = writer.trivia() + writer.write(value) + writer.trivia()
    return text, writer.comments


SCALARS = st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.text(max_size=8)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
COMMAND_TEXT = st.sampled_from(["npm install", "echo hi", "", START, ATTACH, f"make && {START}"])
LIFECYCLE = (
    COMMAND_TEXT
    | st.lists(COMMAND_TEXT, max_size=3)
    | st.dictionaries(
        st.sampled_from(["pair", "server", "db", "watch"]), COMMAND_TEXT | st.lists(COMMAND_TEXT), max_size=3
    )
)
FEATURE_KEYS = st.sampled_from(
    ["ghcr.io/devcontainers/features/node:1", "ghcr.io/devcontainers/features/python", FEATURE_ID, FEATURE_ID + ":0"]
)
OPTIONAL = {
    "name": st.text(max_size=10),
    "image": st.just("mcr.microsoft.com/devcontainers/base:bookworm"),
    "features": st.dictionaries(FEATURE_KEYS, st.dictionaries(st.text(max_size=4), SCALARS, max_size=2), max_size=3),
    "postStartCommand": LIFECYCLE,
    "postAttachCommand": LIFECYCLE,
    "remoteUser": st.sampled_from(["root", "vscode"]),
    "customizations": VALUES,
}
CONFIGS = st.fixed_dictionaries({}, optional=OPTIONAL).flatmap(
    lambda d: st.permutations(list(d.items())).map(dict)  # any key order
)


def spec(config: dict[str, Any]) -> dict[str, Any]:
    """What the devcontainer.json must mean after `pair spaces init`, by the rules the issue and
    docs/install.md give, written out independently of the implementation."""
    out = copy.deepcopy(config)
    if "features" not in out:
        out["features"] = {FEATURE_ID: {}}
    elif not any(k.split(":")[0] == FEATURE_ID for k in out["features"]):
        out["features"][FEATURE_ID] = {}
    added = {}
    for key, ours in COMMANDS.items():
        current = out.get(key)
        flat = [current] if isinstance(current, str) else [" ".join(current)] if isinstance(current, list) else []
        if isinstance(current, dict):
            flat = [v if isinstance(v, str) else " ".join(v) for v in current.values()]
        if key not in out:
            added[key] = ours
        elif any(ours in f for f in flat):
            continue
        elif isinstance(current, dict):
            if "pair" not in current:
                current["pair"] = ours
        else:
            out[key] = {"project": current, "pair": ours}
    if "features" not in config:  # appended in this order: features, the commands, remoteUser
        out = {k: v for k, v in out.items() if k != "features"} | {"features": out["features"]}
    out |= added
    if "remoteUser" not in out:
        out["remoteUser"] = "root"
    return out


@SETTINGS
@given(st.data(), VALUES)
def test_the_parser_agrees_with_json5_on_any_value_written_with_comments(data: st.DataObject, value: Any) -> None:
    text, comments = document(data, value)
    assert ordered(jsonc.loads(text)) == ordered(json5.loads(text))
    assert jsonc.parse(text).comments() == comments


@SETTINGS
@given(st.data(), CONFIGS)
def test_adding_pair_means_what_the_spec_says_and_keeps_every_comment(
    data: st.DataObject, config: dict[str, Any]
) -> None:
    text, comments = document(data, config)
    outcome = devcontainer.add_pair(text, "devcontainer.json")
    result = json5.loads(outcome.text)  # an independent parser's reading
    assert ordered(result) == ordered(spec(config))
    assert jsonc.parse(outcome.text).comments() == comments  # every comment, in order, verbatim
    assert is_subsequence(non_space(text), non_space(outcome.text))  # nothing of the original removed
    assert devcontainer.add_pair(outcome.text, "devcontainer.json").text == outcome.text  # idempotent
    assert bool(outcome.added) == (outcome.text != text)


# --------------------------------------------------------------------------------------------------
# Hand-picked cases: the layout of what is added.


def added(text: str) -> str:
    return devcontainer.add_pair(text, "devcontainer.json").text


def test_members_go_after_the_last_member_and_its_comments_at_its_indentation() -> None:
    text = '{\n  "image": "debian", // the base\n  // "postCreateCommand": "make",\n  "remoteUser": "root"\n}\n'
    assert added(text) == (
        '{\n  "image": "debian", // the base\n  // "postCreateCommand": "make",\n  "remoteUser": "root",\n'
        f'  "features": {{\n    "{FEATURE_ID}": {{}}\n  }},\n'
        f'  "postStartCommand": "{START}",\n  "postAttachCommand": "{ATTACH}"\n}}\n'
    )


def test_a_trailing_comma_style_is_kept_and_a_line_comment_after_the_last_value_stays_on_its_line() -> None:
    text = (
        '{\n\t"features": {\n\t\t"ghcr.io/devcontainers/features/node:1": {}, // node\n\t},\n'
        '\t"remoteUser": "root" // me\n}'
    )
    assert added(text) == (
        '{\n\t"features": {\n\t\t"ghcr.io/devcontainers/features/node:1": {}, // node\n'
        f'\t\t"{FEATURE_ID}": {{}},\n\t}},\n\t"remoteUser": "root", // me\n'
        f'\t"postStartCommand": "{START}",\n\t"postAttachCommand": "{ATTACH}"\n}}'
    )


def test_an_existing_command_becomes_the_object_form_with_its_text_kept_one_level_deeper() -> None:
    text = (
        '{\n    "remoteUser": "root",\n    "features": {"./pairspaces": {}},\n'
        '    "postStartCommand": [\n        "npm", /* the tool */\n        "install"\n    ],\n'
        f'    "postAttachCommand": {{"pair": "{ATTACH}"}}\n}}\n'
    )
    assert added(text) == (
        '{\n    "remoteUser": "root",\n    "features": {"./pairspaces": {}},\n'
        '    "postStartCommand": {\n        "project": [\n            "npm", /* the tool */\n'
        f'            "install"\n        ],\n        "pair": "{START}"\n    }},\n'
        f'    "postAttachCommand": {{"pair": "{ATTACH}"}}\n}}\n'
    )


def test_crlf_files_get_crlf_lines_and_a_bom_is_kept() -> None:
    text = '\ufeff{\r\n  "image": "debian"\r\n}\r\n'
    result = added(text)
    assert result.startswith('\ufeff{\r\n  "image": "debian",\r\n  "features": {\r\n')
    assert "\n" not in result.replace("\r\n", "")


def test_a_one_line_file_stays_on_one_line() -> None:
    assert added('{"image": "debian", "features": {}}') == (
        f'{{"image": "debian", "features": {{"{FEATURE_ID}": {{}}}}, "postStartCommand": "{START}", '
        f'"postAttachCommand": "{ATTACH}", "remoteUser": "root"}}'
    )


def test_an_empty_object_opens_onto_lines_of_its_own() -> None:
    assert added("{ }\n") == (
        f'{{\n\t"features": {{\n\t\t"{FEATURE_ID}": {{}}\n\t}},\n\t"postStartCommand": "{START}",\n'
        f'\t"postAttachCommand": "{ATTACH}",\n\t"remoteUser": "root"\n}}\n'
    )


@pytest.mark.parametrize(
    "feature",
    [
        FEATURE_ID,
        FEATURE_ID + ":0",
        FEATURE_ID + "@sha256:" + "0" * 64,
        "./pairspaces",
        "./x/devcontainer-feature-pairspaces.tgz",
    ],
)
def test_pair_s_feature_is_recognized_in_every_form_of_reference(feature: str) -> None:
    assert devcontainer.is_pair_feature(feature)
    assert devcontainer.add_pair(json.dumps({"features": {feature: {"sshPort": "2200"}}}), "x").added == [
        "postStartCommand",
        "postAttachCommand",
        'remoteUser "root"',
    ]


@pytest.mark.parametrize("feature", ["ghcr.io/devcontainers/features/sshd:1", "./pairspaces-extra", "pairspacesx"])
def test_other_features_are_not_taken_for_pair_s(feature: str) -> None:
    assert not devcontainer.is_pair_feature(feature)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": 1,, }', "expected string, found ','"),
        ('{"a": 1 /* open', "an unterminated block comment"),
        ('{"a": "tab\there"}', "an unterminated or invalid string"),
        ('{"a": nulls}', "unexpected 'nulls'"),
        ('{"a": 1} {}', "unexpected text after the end"),
        ('{"a": }', "expected a value, found '}'"),
        ('{"a": [1, 2}', "expected ',' or ']', found '}'"),
        ("", "expected a value, found the end of the text"),
        ("{'a': 1}", 'unexpected "\'"'),
    ],
)
def test_invalid_text_is_refused_with_where(text: str, message: str) -> None:
    with pytest.raises(jsonc.JsoncError) as caught:
        jsonc.parse(text)
    assert message in str(caught.value)
    assert "line 1, column" in str(caught.value)


def test_invalid_devcontainer_json_is_one_sentence_with_line_and_column() -> None:
    with pytest.raises(PairError) as caught:
        devcontainer.add_pair('{\n  "image": "debian"\n  "features": {}\n}', ".devcontainer/devcontainer.json")
    assert caught.value.message == (
        ".devcontainer/devcontainer.json is not valid JSON with comments: expected ',' or '}', "
        "found '\"features\"' (line 3, column 3)."
    )


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ('{"features": []}', '"features" in x is an array'),
        ('{"postStartCommand": 3}', '"postStartCommand" in x is a number'),
        ('{"postAttachCommand": null}', '"postAttachCommand" in x is null'),
        ("[]", "x holds an array, not an object"),
    ],
)
def test_types_the_spec_does_not_allow_are_refused(config: str, fragment: str) -> None:
    with pytest.raises(PairError) as caught:
        devcontainer.add_pair(config, "x")
    assert fragment in caught.value.message


def test_a_wrong_edit_is_caught_before_it_is_written() -> None:
    doc = jsonc.parse('{"a": 1 /* keep */}')
    with pytest.raises(jsonc.EditCheckFailed, match="lost a comment"):
        jsonc.apply(doc, [jsonc.Edit(8, 10, "")], {"a": 1})
    with pytest.raises(jsonc.EditCheckFailed, match="intended value"):
        jsonc.apply(doc, [jsonc.Edit(6, 1, "2")], {"a": 1})
    with pytest.raises(jsonc.EditCheckFailed, match="does not parse"):
        jsonc.apply(doc, [jsonc.Edit(0, 1, "")], {"a": 1})
    with pytest.raises(jsonc.EditCheckFailed, match="overlapping"):
        jsonc.apply(doc, [jsonc.Edit(1, 3, ""), jsonc.Edit(2, 0, "x")], {"a": 1})
