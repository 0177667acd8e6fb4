"""Every request field with a grammar is judged by its type where the broker decodes it, and
refused in one bounded sentence (pair.api.models.grammar_meta, pair.api.fields, broker.http).

Generated over the endpoint table against the real app: every body field and path parameter
whose type declares a grammar, with values too long, holding control or bidi characters or white
space, or empty, is answered 4xx in the error shape, the value never echoed unbounded, never a
regex, never a 500; values that fit are never refused for that field. And the CLI says the same
before it sends anything."""

from __future__ import annotations

import functools
import json
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import msgspec
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from broker import relay
from broker.errors import Problem
from broker.links import close_reason
from pair.api import endpoints as ep
from pair.api import fields
from pair.api import models as m
from pair.api import terminal as tp
from pair.api.closecodes import CloseCode
from pair.printable import printable
from tests.cli.helpers import assert_error, session_token
from tests.support.broker import InProcessBroker
from tests.support.cli import Person

BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
CONTROLS = "".join(chr(c) for c in range(0x20)) + "\x7f\x85\x9b\u2028\u2029"
TERMINAL_ID = re.compile(tp.TERMINAL_ID_PATTERN)
LONGEST_ECHO = 100  # characters of a refused value an answer may quote (grammar.shown cuts at 60)


@dataclass(frozen=True)
class Field:
    """One field with a grammar: a body field (`in_path` False) or a path parameter."""

    endpoint: ep.Endpoint[Any, Any]
    name: str
    kind: Any  # its Annotated wire type
    in_path: bool
    listed: bool = False  # a body field that is a list of `kind`

    @property
    def meta(self) -> msgspec.Meta:
        found = typing.get_args(self.kind)[1]
        assert isinstance(found, msgspec.Meta)
        return found

    @property
    def what(self) -> str:
        return str((self.meta.extra or {})["what"])

    def __str__(self) -> str:
        return f"{self.endpoint.method} {self.endpoint.path} {'path' if self.in_path else 'body'} {self.name}"


def _grammar_type(hint: Any) -> tuple[Any, bool] | None:
    """The Annotated type with a grammar in a field's type hint (through `| None` and `list[…]`),
    and whether it is a list's item."""
    listed = False
    while True:
        origin = typing.get_origin(hint)
        if origin is typing.Annotated:
            meta = typing.get_args(hint)[1]
            return (hint, listed) if isinstance(meta, msgspec.Meta) and (meta.extra or {}).get("what") else None
        if origin is list:
            hint, listed = typing.get_args(hint)[0], True
        elif origin in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(hint) if a is not type(None)]
            if len(options) != 1:
                return None
            hint = options[0]
        else:
            return None


def grammar_fields() -> list[Field]:
    found = []
    for endpoint in ep.ALL:
        for name, kind in endpoint.path_types().items():
            if _grammar_type(kind):
                found.append(Field(endpoint, name, kind, in_path=True))
        if endpoint.request is None:
            continue
        for info in msgspec.structs.fields(endpoint.request):
            typed = _grammar_type(info.type)
            if typed:
                found.append(Field(endpoint, info.encode_name, typed[0], in_path=False, listed=typed[1]))
    return found


FIELDS = grammar_fields()
# A container's facts: stated in ContainerFacts, checked by pair.api.fields.check_facts against
# their types (models.FACT_GRAMMAR) at bootstrap, check-in and heartbeat (here a check-in),
# refused 422 `invalid_facts` in the same words. The numbers are enforced where they are decoded.
FACTS = [
    Field(ep.CHECKIN, name, m.HostKey if name == "host_keys" else kind, in_path=False, listed=name == "host_keys")
    for name, kind in m.FACT_GRAMMAR.items()
    if name not in ("cpus", "memory_bytes", "disk_bytes")
]
FIELDS_BY_NAME = {str(f): f for f in FIELDS}

# A value for each required body field, and for each path parameter, that fits its grammar: the
# other fields of a request, so that only the one under test can be refused.
BODY_EXAMPLES: dict[str, Any] = {
    "email": "someone@example.com",
    "name": "valid-name",
    "compute_units": 1,
    "storage_units": 1,
    "space_key": "pair_sk_not-a-key",
    "container_name": "box",
    "instance_id": "inst_grammar",
    "facts": {},
    "token": "not-a-token",
    "kind": "space_token",
    "secret": "not-a-secret",
    "device_code": "not-a-code",
    "auth_key": "not-a-key",
    "public_key": "ssh-ed25519 AAAA",
}
PATH_EXAMPLES: dict[str, str] = {
    "an email address": "nobody@example.com",
    "a Space id": "sp_aaaaaaaaaaaa",
    "a Space key id": "sk_aaaaaaaaaaaa",
    "an SSH key id": "key_aaaaaaaaaaaa",
    "an access request id": "req_aaaaaaaaaaaa",
    "a valid template name": "standard",
    "a valid group name": "eng",
    "a TCP port": "8080",
}


def refuses(kind: Any, value: Any) -> bool:
    try:
        msgspec.convert(value, kind)
    except msgspec.ValidationError:
        return True
    return False


@functools.cache
def good_values(field: Field) -> st.SearchStrategy[Any]:
    meta = field.meta
    if meta.ge is not None:  # a number (a port)
        return st.integers(int(meta.ge), int(meta.le or meta.ge))
    if field.kind == m.Email:  # the regex strategy is slow with its classes; tests/unit/test_grammar.py uses it
        atom = st.text(st.characters(categories=["Ll", "Lu", "Nd"]), min_size=1, max_size=12)
        plain = st.builds("{}@{}.{}".format, atom, atom, atom)
    elif meta.pattern is not None:
        # models.whole's anchors, which Hypothesis's regex strategy is slow with, left out
        body = meta.pattern.removeprefix("^(?:").removesuffix(")$(?!\\n)")
        plain = st.from_regex(body, fullmatch=True)
    else:
        plain = st.text(min_size=meta.min_length or 0, max_size=meta.max_length or 100)
    return plain.filter(lambda v: not refuses(field.kind, v))


@functools.cache
def bad_values(field: Field) -> st.SearchStrategy[Any]:
    meta = field.meta
    if meta.ge is not None:  # a port, as a path segment
        return st.one_of(
            st.integers(max_value=int(meta.ge) - 1).map(str),
            st.integers(min_value=int(meta.le or 0) + 1).map(str),
            st.sampled_from(["", " 80", "80 ", "+80", "80.0", "1e3", "0x50", "8o", "9" * 5000, "80\u202e"]),
        )
    inside = st.sampled_from(CONTROLS + BIDI + " \u00a0\u3000")
    grown = st.tuples(good_values(field), inside, st.integers(0, 80)).map(lambda t: t[0][: t[2]] + t[1] + t[0][t[2] :])
    too_long = st.integers((meta.max_length or 300) + 1, 6000).map(lambda n: ("ab" * n)[:n])
    spaced = good_values(field).map(lambda v: f" {v} ")
    # A candidate the grammar allows (a space in a message, an empty label) becomes one no string
    # grammar allows, rather than being filtered out: every example then tries every field.
    longest = "ab" * 3001
    return st.one_of(st.just(""), grown, too_long, spaced).map(lambda v: v if refuses(field.kind, v) else longest)


BEAT = {"instance_id": "inst_grammar"}


@dataclass
class Setup:
    session: dict[str, str]
    agent: dict[str, str]


@pytest.fixture
def setup(broker: InProcessBroker, people: dict[str, Person]) -> Setup:
    """alice's (an admin's) session, and the agent credential of a container of hers."""
    session = {"Authorization": f"Bearer {session_token(people['alice'])}"}
    token = broker.http.post("/api/v1/spaces", json={"name": "box"}, headers=session).json()["token"]
    registered = broker.http.post(
        "/api/v1/agent/bootstrap", json={"token": token, "instance_id": "inst_grammar", "facts": {}}
    ).json()
    return Setup(session, {"Authorization": f"Bearer {registered['agent_credential']}"})


def send(broker: InProcessBroker, setup: Setup, field: Field, value: Any) -> Any:
    endpoint = field.endpoint
    params = {
        name: PATH_EXAMPLES[Field(endpoint, name, kind, True).what] for name, kind in endpoint.path_types().items()
    }
    body: dict[str, Any] | None = None
    if field.in_path:
        params[field.name] = str(value)
    if endpoint.request is not None:
        body = {
            f.encode_name: BODY_EXAMPLES[f.encode_name] for f in msgspec.structs.fields(endpoint.request) if f.required
        }
        if not field.in_path:
            body[field.name] = [value] if field.listed else value
    headers = {"session": setup.session, "admin": setup.session, "agent": setup.agent, "none": {}}[endpoint.auth]
    path = endpoint.path.format(**{k: quote(v, safe="") for k, v in params.items()})
    return broker.http.request(endpoint.method, path, json=body, headers=headers)


def test_every_field_with_a_grammar_is_found() -> None:
    """The cases below cover what the brief names: names, emails, ids, ports, messages."""
    named = {f.what for f in FIELDS}
    assert {
        "a valid Space name",
        "a valid template name",
        "a valid group name",
        "a valid Space key name",
        "an email address",
        "a Space id",
        "a TCP port",
        "a valid message",
        "a port label",
        "a container instance id",
    } <= named, named
    assert "POST /api/v1/login body email" in FIELDS_BY_NAME  # a malformed one is no bad key (session 8)
    assert len(FIELDS) >= 40, [str(f) for f in FIELDS]


def test_every_constraint_in_a_request_declares_its_sentence() -> None:
    """A refusal names a regex only when a constraint has no sentence: every string pattern or
    length msgspec enforces in a request type, at any depth, comes with one (models.grammar_meta)."""
    seen: set[type] = set()
    lacking: list[str] = []

    def walk(info: Any, where: str, said: bool = False) -> None:
        if isinstance(info, msgspec.inspect.Metadata):
            walk(info.type, where, said or bool((info.extra or {}).get("what")))
        elif isinstance(info, msgspec.inspect.StrType):
            if (info.pattern or info.max_length is not None) and not said:
                lacking.append(where)
        elif isinstance(info, msgspec.inspect.StructType):
            if info.cls in seen:
                return
            seen.add(info.cls)
            for f in info.fields:
                walk(f.type, f"{info.cls.__name__}.{f.encode_name}")
        elif isinstance(info, msgspec.inspect.UnionType):
            for option in info.types:
                walk(option, where, said)
        elif isinstance(info, (msgspec.inspect.ListType, msgspec.inspect.SetType, msgspec.inspect.FrozenSetType)):
            walk(info.item_type, where + "[]", said)
        elif isinstance(info, msgspec.inspect.DictType):
            walk(info.value_type, where + "{}", said)

    for info in msgspec.inspect.multi_type_info([e.request for e in ep.ALL if e.request is not None]):
        walk(info, "")
    assert not lacking, lacking


def _schema_of(document: dict[str, Any], field: Field) -> dict[str, Any]:
    """The schema /openapi.json gives `field`: its path parameter's, or its body property's
    (through a $ref, `anyOf` with null, and a list's `items`)."""
    operation = document["paths"][field.endpoint.path][field.endpoint.method.lower()]
    if field.in_path:
        return next(p["schema"] for p in operation["parameters"] if p["name"] == field.name)
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    node = document["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"][field.name]
    node = next((o for o in node.get("anyOf", [node]) if o.get("type") != "null"), node)
    return dict(node.get("items", node))


def test_openapi_states_exactly_the_grammar_the_broker_enforces(broker: InProcessBroker) -> None:
    """The patterns and lengths are where they were (/openapi.json), now enforced as well."""
    document = broker.http.get("/openapi.json").json()
    for field in FIELDS:
        schema, meta = _schema_of(document, field), field.meta
        assert schema.get("pattern") == meta.pattern, str(field)
        assert schema.get("maxLength") == meta.max_length, str(field)
        assert schema.get("minimum") == meta.ge and schema.get("maximum") == meta.le, str(field)
        assert schema["description"] == meta.description, str(field)
    by_name = {str(f): _schema_of(document, f) for f in FIELDS}
    assert by_name["POST /api/v1/spaces body template"]["pattern"] == m.SPACE_NAME_PATTERN
    assert by_name["POST /api/v1/spaces body share_with"]["pattern"] == m.EMAIL_PATTERN
    assert by_name["PUT /api/v1/spaces/{space_id}/shared-ports/{port} body label"]["pattern"] == m.PORT_LABEL_PATTERN


def assert_bounded_refusal(response: Any, field: Field, value: Any) -> None:
    assert 400 <= response.status_code < 500, (str(field), response.status_code, response.text[:300])
    body = response.json()
    assert set(body) == {"message", "detail", "code"}, body
    text = body["message"] + " " + body["detail"]
    assert body["message"].endswith("."), body
    assert text.isprintable(), body  # the value escaped: no control or bidi character
    assert "regex" not in text and "(?" not in text and "[^" not in text, body  # words, not a pattern
    assert len(response.content) < 1000, response.text[:300]
    if isinstance(value, str) and len(value) > LONGEST_ECHO:
        assert value not in response.text


# Each example tries every field once (so each is tried as often as the examples run); Hypothesis's
# explain phase traces every line (slow before Python 3.12), and the failing example is enough.
EXAMPLES = settings(
    max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), phases=[Phase.generate, Phase.shrink]
)


def on_the_control_channel(broker: InProcessBroker, setup: Setup, heartbeat: dict[str, Any] | str) -> tuple[int, str]:
    """The close code and reason of an agent's control channel on which `heartbeat` (its fields
    over a valid instance id) is sent, or the frame as it is when `heartbeat` is a string."""
    if isinstance(heartbeat, str):
        frame = heartbeat
    else:
        frame = json.dumps({"type": "heartbeat", "heartbeat": {**BEAT, **heartbeat}})
    with broker.http.websocket_connect(ep.AGENT_CONNECT, headers=setup.agent) as ws:
        ws.send_text(frame)
        closed = ws.receive()
    assert closed["type"] == "websocket.close", closed
    reason = closed.get("reason") or ""
    assert reason.isprintable() and len(reason.encode()) <= 123, reason  # RFC 6455 §5.5
    return closed["code"], reason


@EXAMPLES
@given(data=st.data())
def test_a_value_that_breaks_its_grammar_is_refused_in_one_bounded_sentence(
    broker: InProcessBroker, setup: Setup, data: st.DataObject
) -> None:
    for field in FIELDS:
        value = data.draw(bad_values(field), label=str(field))
        response = send(broker, setup, field, value)
        if field.in_path and (value == "" or "/" in value):  # another route's path, or none's
            assert response.status_code < 500, response.text
            continue
        assert_bounded_refusal(response, field, value)
        body = response.json()
        assert (response.status_code, body["code"]) == (422, "invalid"), (str(field), body)
        explain = fields.EXPLAINED.get(field.what)
        said = explain(value) if explain else None
        assert body["message"] == said if said else body["message"].endswith(f" is not {field.what}."), body
        assert body["detail"] == field.meta.description, body
        if field.endpoint is ep.HEARTBEAT:  # the same heartbeat on the control channel: the same sentence
            code, reason = on_the_control_channel(broker, setup, {field.name: [value] if field.listed else value})
            assert (code, reason) == (CloseCode.BAD_DATA, close_reason(f"bad message: {body['message']}")), field
    for fact in FACTS:
        value = data.draw(bad_values(fact), label=f"fact {fact.name}")
        response = checked_in(broker, setup, fact, value)
        assert_bounded_refusal(response, fact, value)
        body = response.json()
        assert (response.status_code, body["code"]) == (422, "invalid_facts"), (fact.name, body)
        assert body["message"].endswith(f" is not {fact.what}."), body
        assert body["detail"] == fact.meta.description, body


def checked_in(broker: InProcessBroker, setup: Setup, fact: Field, value: Any) -> Any:
    facts = {fact.name: [value] if fact.listed else value}
    return broker.http.post("/api/v1/agent/checkin", json={**BEAT, "facts": facts}, headers=setup.agent)


@EXAMPLES
@given(data=st.data())
def test_a_value_that_fits_its_grammar_is_never_refused_for_it(
    broker: InProcessBroker, setup: Setup, data: st.DataObject
) -> None:
    for field in FIELDS:
        value = data.draw(good_values(field), label=str(field))
        response = send(broker, setup, field, value)
        assert response.status_code < 500, (str(field), response.text)
        if response.status_code >= 400:
            assert f" is not {field.what}." not in response.json()["message"], (str(field), response.text)
    for fact in FACTS:
        if fact.name == "host_keys":  # its pattern is the shape; a key must also parse (tests/unit/test_grammar.py)
            continue
        value = data.draw(good_values(fact), label=f"fact {fact.name}")
        response = checked_in(broker, setup, fact, value)
        assert response.status_code == 200, (fact.name, value, response.text)


# -- the two defects the tester found (session 7) ------------------------------------------------


def test_a_5000_character_template_name_is_refused_not_echoed(
    broker: InProcessBroker, people: dict[str, Person]
) -> None:
    """`pair spaces authorize --template <5,000 characters>` was answered 404 naming it whole."""
    name = "t" * 5000
    response = broker.http.post(
        "/api/v1/spaces", json={"template": name}, headers={"Authorization": f"Bearer {session_token(people['bob'])}"}
    )
    assert response.status_code == 422, response.text[:200]
    body = response.json()
    assert body == {
        "message": f"'{'t' * 60}…' is not a valid template name.",
        "detail": f"A template name is {m.NAME_RULE}.",
        "code": "invalid",
    }
    message, hint = assert_error(people["bob"].pair("spaces", "authorize", "--no-share", "--template", name))
    assert (message, hint) == (body["message"], body["detail"])
    assert people["bob"].pair("spaces", "list", "--json").out.strip() == "[]"  # nothing was made


def test_a_bidi_character_in_an_access_request_message_is_refused_in_words(
    broker: InProcessBroker, tmp_path: Path
) -> None:
    """`pair login EMAIL --request --message …` with a bidi control got a 422 whose detail was a raw regex."""
    message = "please let me in \u202egnp.exe"
    response = broker.http.post("/api/v1/access-requests", json={"email": "new@example.com", "message": message})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["message"] == "'please let me in \\u202egnp.exe' is not a valid message."
    assert "regex" not in body["detail"] and "\\x00" not in body["detail"]
    assert "bidirectional" in body["detail"]
    newcomer = Person(broker, "new@example.com", tmp_path / "new")
    said = newcomer.pair("login", "new@example.com", "--request", "--url", broker.url, "--message", message)
    assert assert_error(said) == (body["message"], body["detail"])


# -- a malformed email at login (session 8) -------------------------------------------------------

EMAIL_SENTENCE = ("is not an email address.", "An email address has the form name@example.com, at most 254 characters.")
MALFORMED_EMAILS = ["not an email", "alice@example.com\nHost *", "alice@\u202eexample.com", "a" * 300 + "@example.com"]


@pytest.mark.parametrize("email", MALFORMED_EMAILS, ids=["words", "newline", "bidi", "long"])
def test_a_malformed_login_email_is_bad_input_not_bad_credentials(
    broker: InProcessBroker, people: dict[str, Person], tmp_path: Path, email: str
) -> None:
    """Reproduction: `POST /api/v1/login` with an email that is no address was answered 401
    `bad_credentials`; it names no account, so it is refused as every other email field is."""
    key = broker.keys[people["alice"].email]
    response = broker.http.post("/api/v1/login", json={"email": email, "auth_key": key})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "invalid"
    assert body["message"] == f"{fields.value_text(email)} {EMAIL_SENTENCE[0]}"
    assert body["detail"] == EMAIL_SENTENCE[1]
    assert_bounded_refusal(response, FIELDS_BY_NAME["POST /api/v1/login body email"], email)
    newcomer = Person(broker, "alice@example.com", tmp_path / "alice-elsewhere")
    key_file = tmp_path / "auth.key"
    key_file.write_text(key)
    said = newcomer.pair("login", email, "--key-file", str(key_file), "--url", broker.url)
    assert assert_error(said) == (body["message"], body["detail"])


def test_a_well_formed_unknown_email_is_answered_as_a_wrong_key_is(
    broker: InProcessBroker, people: dict[str, Person]
) -> None:
    """No account enumeration: an address without an account, and an account with another's key,
    get one answer (401 `bad_credentials`, the same words)."""
    alice, bob = people["alice"].email, people["bob"].email
    unknown = broker.http.post("/api/v1/login", json={"email": "nobody@example.com", "auth_key": broker.keys[alice]})
    wrong_key = broker.http.post("/api/v1/login", json={"email": alice, "auth_key": broker.keys[bob]})
    padded = broker.http.post("/api/v1/login", json={"email": "nobody@example.com", "auth_key": "pak_nothing"})
    assert unknown.status_code == wrong_key.status_code == padded.status_code == 401
    assert unknown.json() == wrong_key.json() == padded.json()
    assert unknown.json()["code"] == "bad_credentials"


# -- the agent's control channel (session 8) ------------------------------------------------------

HOSTILE = "\u202e\n\x1b[31m" + "x" * 300
CONTROL_FRAMES = {
    # msgspec quoted these values unescaped or whole: the container's text in the close frame
    "tag": ({"type": "heartbeat" + HOSTILE}, "Invalid value 'heartbeat\\u202e\\n\\x1b[31mxxxx"),
    "enum": ({"type": "heartbeat", "heartbeat": {**BEAT, "state": "up" + HOSTILE}}, "Invalid enum value 'up\\u202e"),
    "grammar": ({"type": "heartbeat", "heartbeat": {"instance_id": "é" * 200}}, "'éééé"),
    "nested": (
        {"type": "heartbeat", "heartbeat": {**BEAT, "ssh": {"serving": False, "reason": HOSTILE}}},
        "'\\u202e\\n\\x1b[31mxxx",
    ),
    "missing": (
        {"type": "heartbeat", "heartbeat": {}},
        "Object missing required field `instance_id` (at $.heartbeat).",
    ),
    "not json": ("{" + HOSTILE, "JSON is malformed: "),
}


@pytest.mark.parametrize(("frame", "start"), CONTROL_FRAMES.values(), ids=CONTROL_FRAMES.keys())
def test_a_bad_control_message_is_closed_with_one_escaped_bounded_sentence(
    broker: InProcessBroker, setup: Setup, frame: Any, start: str
) -> None:
    """Reproduction: the channel closed with `bad message: ` and msgspec's raw text, in which a
    container's tag or enum value came whole (a newline, a bidi control, kilobytes) into the close
    frame and the logs; a reason over 123 bytes of UTF-8 was not cut to fit."""
    sent = frame if isinstance(frame, str) else json.dumps(frame)
    code, reason = on_the_control_channel(broker, setup, sent)
    assert code == CloseCode.BAD_DATA
    assert reason.startswith(f"bad message: {start}"), reason
    assert "x" * 70 not in reason and "regex" not in reason, reason
    assert reason.endswith((".", "…")), reason


# -- the terminal stream's query parameters (`?cols=C&rows=R`, `?join=TERMINAL_ID`) ---------------


@settings(max_examples=60, deadline=None)
@given(
    query=st.one_of(
        st.fixed_dictionaries({"join": st.text(max_size=300).filter(lambda t: not TERMINAL_ID.fullmatch(t))}),
        st.fixed_dictionaries(
            {"cols": st.one_of(st.integers().filter(lambda n: not 1 <= n <= 1000).map(str), st.text(max_size=300))},
            optional={"rows": st.sampled_from(["24", "0", "x"])},
        ).filter(lambda q: not q["cols"].strip().isdigit() or not 1 <= int(q["cols"]) <= 1000),
    )
)
def test_a_terminal_query_that_breaks_its_grammar_is_refused_in_words(query: dict[str, str]) -> None:
    with pytest.raises(Problem) as refused:
        relay._terminal(SimpleNamespace(query_params=query), SimpleNamespace(email="alice@example.com"))  # type: ignore[arg-type]
    problem = refused.value
    assert (problem.status, problem.code) == (422, "invalid")
    text = f"{problem.message} {problem.detail}"
    assert "regex" not in text and "(?" not in text and "[^" not in text, text
    assert text.isprintable() and len(text) < 400, text
    assert problem.message.endswith((" is not a terminal id.", " is not a terminal size.")), text


@given(st.text(max_size=200))
def test_a_template_description_is_exactly_what_prints_as_it_is(text: str) -> None:
    """models.TemplateDescription's pattern is pair.printable's table: refused iff printing would escape."""
    assert refuses(m.TemplateDescription, text) == (printable(text) != text)
