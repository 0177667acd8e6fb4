"""pair.api.tokens.normalize: the one place that decides what a pasted secret is.

Generated pastes: a valid token wrapped as people paste it (whitespace, CR/LF, BOMs, quotes,
`NAME=` lines, UTF-16) comes back equal; anything at all either comes back as a token or is
refused with a PairError that names its cause, never another exception.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker import credentials
from pair.api.errors import PairError
from pair.api.tokens import KNOWN_PREFIXES, MAX_PASTE, SPACE_TOKEN, SecretError, normalize, unverified_claims

JWT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(header: dict[str, object], claims: dict[str, object], signature: bytes) -> str:
    return ".".join((b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
tokens = st.builds(
    jwt,
    st.fixed_dictionaries({"alg": st.just("EdDSA"), "typ": st.just("JWT"), "kid": st.text(max_size=43)}),
    st.dictionaries(st.text(max_size=10), json_values, min_size=1, max_size=6),
    st.binary(min_size=64, max_size=64),
)
ASCII_SPACE = " \t\r\n"
spaces = st.text(alphabet=ASCII_SPACE + "\u00a0\u2003\u3000\u200b\ufeff", max_size=4)
ascii_spaces = st.text(alphabet=ASCII_SPACE, max_size=4)
assignments = st.sampled_from(["", "PAIR_SPACE_TOKEN=", "export PAIR_SPACE_TOKEN=", "TOKEN = ", "set T=", "$env:X="])
quotes = st.sampled_from(["", '""', "''", "``", "\u201c\u201d", "\u2018\u2019"])


def wrap(token: str, lead: str, assignment: str, quote: str, inner: str, trail: str) -> str:
    opening, closing = (quote[0], quote[1]) if quote else ("", "")
    return f"{lead}{assignment}{opening}{inner}{token}{inner}{closing}{trail}"


@given(tokens, spaces, assignments, quotes, spaces, spaces)
def test_a_valid_token_wrapped_as_pasted_comes_back_equal(token, lead, assignment, quote, inner, trail):
    pasted = wrap(token, lead, assignment, quote, inner, trail)
    assert normalize(pasted) == token
    assert normalize(pasted.encode()) == token  # a file or standard input
    assert normalize(pasted.encode("utf-8-sig")) == token
    assert normalize(pasted.encode("utf-16")) == token  # with a BOM: Windows' "Unicode"


@given(tokens, ascii_spaces, assignments, st.sampled_from(["", '""', "''"]), ascii_spaces, ascii_spaces)
def test_ascii_pastes_survive_every_way_utf16_arrives(token, lead, assignment, quote, inner, trail):
    pasted = wrap(token, lead, assignment, quote, inner, trail)
    for data in (pasted.encode("utf-16-le"), pasted.encode("utf-16-be")):  # without a BOM
        assert normalize(data) == token
    bom_then_ascii = b"\xff\xfe" + pasted.encode()  # `"$(cat FILE)"` of UTF-16: the shell drops the NULs
    assert normalize(bom_then_ascii) == token
    assert normalize(bom_then_ascii.decode("utf-8", "surrogateescape")) == token  # as an argument (PEP 383)


def _verdict(pasted: str | bytes, source: str = "") -> str | SecretError:
    try:
        return normalize(pasted, source=source)
    except SecretError as exc:
        return exc


def _judge(pasted: str | bytes) -> None:
    result = _verdict(pasted, "the test")
    if isinstance(result, SecretError):
        assert result.cause
        assert result.message == f"The Space token from the test is not usable: {result.cause}."
        assert result.hint
        return
    assert JWT.fullmatch(result), result
    assert normalize(result) == result  # idempotent
    assert unverified_claims(result) is not None


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.text() | st.binary() | st.text(alphabet="ABCxyz019-_. \t\r\n\"'=\ufeff…/$", max_size=40))
def test_anything_pasted_is_a_token_or_a_named_refusal(pasted):
    _judge(pasted)


@given(tokens, st.data())
def test_a_damaged_token_is_a_token_or_a_named_refusal(token, data):
    at = data.draw(st.integers(0, len(token)))
    damage = data.draw(st.sampled_from(["cut", "insert", "replace"]))
    piece = data.draw(st.text(min_size=1, max_size=3))
    damaged = {"cut": token[:at], "insert": token[:at] + piece + token[at:], "replace": token[:at] + piece}[damage]
    _judge(damaged)


@given(tokens, st.integers(1, 100), st.sampled_from([" ", "\t", "\n", "\r\n"]))
def test_whitespace_inside_is_named_with_where(token, at, space):
    at = at % (len(token) - 1) + 1
    with pytest.raises(SecretError) as caught:
        normalize(token[:at] + space + token[at:])
    what = {" ": "a space", "\t": "a tab"}.get(space, "a line break")
    assert caught.value.cause == f"it has {what} inside (after {at} characters)"


@pytest.mark.parametrize(
    ("pasted", "cause"),
    [
        ("", "it is empty"),
        (" \r\n\ufeff ", "it is empty"),
        ("a.b", "it is cut short (a JWT has three dot-separated parts, this has 2)"),
        ("eyJhbGciOiJFZERTQSJ9.e30.", "it is cut short (it ends with a dot: the signature is missing)"),
        ("eyJhbGciOiJFZERTQSJ9.e30." + b64(bytes(40)), "it is cut short (its signature has 40 bytes, an EdDSA"),
        ("eyJhbGciOiJFZERTQSJ9.e30." + b64(bytes(64))[:-1], "it is cut short (its signature, the third part"),
        ("a.b.c.d.e", "it has 5 dot-separated parts where a JWT has three"),
        ("zzz.e30.AAAA", "its first part (the header) does not decode"),
        ("eyJhbGciOiJFZERTQSJ9.zzz.AAAA", "its second part (the claims) does not decode"),
        ("eyJhbGciOiJFZERTQSJ9." + b64(b"[" * 6000) + ".AAAA", "its second part (the claims) does not decode"),
        ("/home/me/SPACE_ID.txt", "it looks like a file path"),
        ("SPACE_ID.txt", "it looks like a file path"),
        ("C:\\Users\\me\\SPACE_ID.txt", "it looks like a file path"),
        ("https://pair.example.com", "it is a URL, not a Space token"),
        ("pair_ak_" + "A" * 43, "it is an auth key (pair_ak_…), not a Space token"),
        ("pair_st_" + "A" * 43, "it is a session token (pair_st_…), not a Space token"),
        ("eyJhbGciOiJFZERTQSJ9.eyJzdWIi…", "it was shortened for display (it has an ellipsis)"),
        ("eyJhbGciOiJFZERTQSJ9...xyz", "it was shortened for display"),
        ("\"'eyJ.e30.AAAA'", 'it has a quote (") left over'),
        ("eyJ.e30.AA$A", "it has the character '$', which a Space token never has"),
        ("eyJ.e30.AA\x1bA", "it has the control character U+001B"),
        ("eyJ.e30.AAÀ", "it has the character 'À' (U+00C0 LATIN CAPITAL LETTER A WITH GRAVE)"),
        (b"\x80abc", "it is not UTF-8 text (byte 0x80 at position 0)"),
        (b"\xff\xfe\x00\xd8", "it is not UTF-16 text"),
        (b"a\x00b\x00\x00c", "it has NUL bytes"),
        ("x" * (MAX_PASTE + 1), "it is far longer than a Space token"),
    ],
)
def test_each_cause_is_named(pasted, cause):
    with pytest.raises(SecretError) as caught:
        normalize(pasted)
    assert caught.value.cause.startswith(cause), caught.value.cause
    assert isinstance(caught.value, PairError)


def test_a_source_is_named_in_the_message_and_hints_never_repeat_the_command_just_run():
    with pytest.raises(SecretError) as caught:
        normalize("SPACE_ID.txt", source="--token")
    assert caught.value.message.startswith("The Space token from --token is not usable: it looks like a file path")
    assert '"$(cat SPACE_ID.txt)"' in caught.value.hint  # what to run instead of passing the name
    for pasted in ("", "a b", "a.b", b"\x80", "pair_ak_x"):
        with pytest.raises(SecretError) as caught:
            normalize(pasted)
        assert "--token" not in caught.value.hint


def test_every_prefix_the_broker_gives_a_secret_is_recognised():
    for prefix in (credentials.AUTH_KEY, credentials.SESSION, credentials.AGENT):
        assert prefix in KNOWN_PREFIXES
        with pytest.raises(SecretError, match=re.escape(prefix)):
            normalize(credentials.new_secret(prefix), SPACE_TOKEN)


def test_install_sh_door_reads_standard_input_and_answers_in_its_format():
    token = jwt({"alg": "EdDSA"}, {"sub": "sp_x"}, bytes(64))

    def door(data: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
        command = [sys.executable, "-I", "-m", "pair.api.tokens", *args]
        return subprocess.run(command, input=data, capture_output=True, timeout=30, check=False)

    good = door(("\ufeff" + token + "\r\n").encode("utf-16"))
    assert (good.returncode, good.stdout, good.stderr) == (0, token.encode() + b"\n", b"")
    bad = door(b"pair_ak_xyz", "--source=--token")
    assert bad.returncode == 1 and bad.stdout == b""
    assert bad.stderr.decode().splitlines() == [
        "pair: error: The Space token from --token is not usable: it is an auth key (pair_ak_…), not a Space token.",
        f"pair: hint: {SPACE_TOKEN.hint}",
    ]
