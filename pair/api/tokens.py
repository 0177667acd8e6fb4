"""Secrets as people paste them, and what the CLI needs to know about a Space token without
verifying it (the broker verifies).

Every way a secret arrives goes through `normalize`: the argument of `pair spaces bootstrap`,
`PAIR_SPACE_TOKEN`, the Feature's `token` option and install.sh's `--token` (install.sh runs
`python -m pair.api.tokens` when pair is already installed, and pair's installer,
pair.container.install, reads it too), `$PAIR_HOME/bootstrap.txt`, and the broker's bootstrap endpoint.
So all of them accept the same pastes, and name the same cause when they refuse one.

What a paste may carry around the secret, and loses here: surrounding whitespace (spaces, tabs,
CR/LF, no-break and zero-width spaces), a byte-order mark, UTF-16 encoding (a Windows editor's
"Unicode"; also with the NUL bytes a shell dropped from `"$(cat FILE)"`), terminal bracketed-paste
markers, one `NAME=` / `export NAME=` / `set NAME=` / `$env:NAME=` prefix (a line copied from a
.env file or a shell), and one pair of matching quotes. Anything else that is not the secret's
grammar is refused with the cause in words: empty, a space or line break inside, cut short, a
file path or URL instead of the contents, another kind of pair secret, a character the secret
never has.

Stdlib only, and quick to import: install.sh runs it before anything else of pair is needed.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass

from pair.api.errors import PairError

AUDIENCE = "pair:space-bootstrap"
MAX_PASTE = 16 * 1024  # characters; a Space token is ~400, so anything longer is not one

# The opaque secrets' prefixes (broker.credentials makes them), so a paste of the wrong one is named.
AUTH_KEY_PREFIX = "pair_ak_"
SESSION_PREFIX = "pair_st_"
AGENT_CREDENTIAL_PREFIX = "pair_ac_"
SPACE_KEY_PREFIX = "pair_sk_"
KNOWN_PREFIXES = {
    AUTH_KEY_PREFIX: "an auth key (pair_ak_…)",
    SESSION_PREFIX: "a session token (pair_st_…)",
    AGENT_CREDENTIAL_PREFIX: "a container's agent credential (pair_ac_…)",
    SPACE_KEY_PREFIX: "a Space key (pair_sk_…)",
}

Diagnosis = tuple[str, str]  # (the cause, in words that complete "…: CAUSE."; what to do)


@dataclass(frozen=True)
class SecretKind:
    """One kind of secret people paste: its name, grammar and where a good one comes from.

    `alphabet`: every character the secret may hold. `shape`: given text made only of those
    characters, the Diagnosis of why it is still not one, or None. `prefix`: the fixed start of
    an opaque secret ("" for a JWT). `hint`: where to get a good one.
    """

    name: str
    alphabet: frozenset[str]
    shape: Callable[[str], Diagnosis | None]
    hint: str
    prefix: str = ""


class SecretError(PairError):
    """A paste that is not the secret, even after normalization. `cause` says why in words."""

    def __init__(self, kind: SecretKind, source: str, cause: str, hint: str) -> None:
        if source:
            message = f"The {kind.name} from {source} is not usable: {cause}."
        else:
            message = f"That is not a usable {kind.name}: {cause}."
        super().__init__(message, hint)
        self.kind = kind
        self.cause = cause


# -- the Space token: a JWS compact serialization (RFC 7515 §7.1), three base64url parts -------

_BASE64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_RECOPY = "Copy it again in one piece: the whole single line of SPACE_ID.txt (about 400 characters)."
_ORDINALS = ("first", "second", "third")


def _b64decode(part: str) -> bytes:
    """base64url without padding (RFC 7515 §2); binascii.Error or ValueError if it is not."""
    if len(part) % 4 == 1:
        raise ValueError("impossible base64 length")
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _json_object(part: str) -> dict[str, object] | None:
    try:
        value = json.loads(_b64decode(part))
    except (binascii.Error, ValueError, RecursionError):  # ValueError: also bad UTF-8, bad JSON
        return None  # RecursionError: JSON nested thousands deep
    return value if isinstance(value, dict) else None


def _jwt_shape(text: str) -> Diagnosis | None:
    parts = text.split(".")
    if len(parts) < 3:
        return f"it is cut short (a JWT has three dot-separated parts, this has {len(parts)})", _RECOPY
    if len(parts) > 3:
        return (
            f"it has {len(parts)} dot-separated parts where a JWT has three (two tokens run together?)",
            "Copy only the single line of SPACE_ID.txt.",
        )
    for ordinal, part in zip(_ORDINALS, parts, strict=True):
        if not part:
            if ordinal == "third":
                return "it is cut short (it ends with a dot: the signature is missing)", _RECOPY
            return f"its {ordinal} part is empty (a JWT has three non-empty parts)", _RECOPY
    header, payload = _json_object(parts[0]), _json_object(parts[1])
    if header is None:
        return "its first part (the header) does not decode (characters were lost or changed in copying)", _RECOPY
    if payload is None:
        return "its second part (the claims) does not decode (characters were lost or changed in copying)", _RECOPY
    try:
        signature = _b64decode(parts[2])
    except (binascii.Error, ValueError):
        return "it is cut short (its signature, the third part, is not whole)", _RECOPY
    if header.get("alg") == "EdDSA" and len(signature) != 64:  # RFC 8032 §5.1.6: 64 bytes
        what = "cut short" if len(signature) < 64 else "too long"
        return f"it is {what} (its signature has {len(signature)} bytes, an EdDSA signature 64)", _RECOPY
    return None


SPACE_TOKEN = SecretKind(
    name="Space token",
    alphabet=_BASE64URL | {"."},
    shape=_jwt_shape,
    hint="Copy the single line of SPACE_ID.txt that `pair spaces authorize` wrote "
    "(`pair spaces authorize --space NAME` issues a new one).",
)


# -- the Space key: `pair_sk_` + base64url(broker URL) + `.` + 43 characters of secret -----------

SPACE_KEY_SECRET_LENGTH = 43  # base64url of 32 random bytes, unpadded (secrets.token_urlsafe(32))
_KEY_URL = re.compile(r"https?://[A-Za-z0-9.:/_~%-]+")  # install.sh's check_url grammar
_KEY_RECOPY = "Copy the whole key again: one line that `pair spaces keys create` printed (or its --output file)."


def space_key(broker_url: str, secret: str) -> str:
    """The Space key for `broker_url` with `secret` (docs/tokens.md): the broker's URL travels in
    the key, base64url without padding (RFC 4648 §5), as a Space token's `iss` does."""
    encoded = base64.urlsafe_b64encode(broker_url.encode()).decode().rstrip("=")
    return f"{SPACE_KEY_PREFIX}{encoded}.{secret}"


def _key_url(text: str) -> str | None:
    """The broker URL a key's first part decodes to, or None."""
    encoded = text[len(SPACE_KEY_PREFIX) :].partition(".")[0]
    try:
        url = _b64decode(encoded).decode("ascii")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return None
    return url if _KEY_URL.fullmatch(url) and ".." not in url else None


def _key_shape(text: str) -> Diagnosis | None:
    rest = text[len(SPACE_KEY_PREFIX) :]
    if rest.count(".") != 1:
        return (
            f"it has {rest.count('.')} dots where a Space key has one (between its broker and its secret)",
            _KEY_RECOPY,
        )
    encoded, secret = rest.split(".")
    if not encoded or _key_url(text) is None:
        return (
            "its first part does not decode to a broker URL (characters were lost or changed in copying)",
            _KEY_RECOPY,
        )
    if len(secret) != SPACE_KEY_SECRET_LENGTH:
        what = "cut short" if len(secret) < SPACE_KEY_SECRET_LENGTH else "too long"
        return (
            f"it is {what} (its secret has {len(secret)} characters, a Space key's {SPACE_KEY_SECRET_LENGTH})",
            _KEY_RECOPY,
        )
    return None


SPACE_KEY = SecretKind(
    name="Space key",
    alphabet=_BASE64URL | {"."},
    shape=_key_shape,
    hint="Copy the key `pair spaces keys create` printed once (or the file its --output wrote); "
    "its owner can create a new one.",
    prefix=SPACE_KEY_PREFIX,
)
KINDS = {"space-token": SPACE_TOKEN, "space-key": SPACE_KEY}


def space_key_broker(key: str) -> str:
    """The broker URL a Space key names (not verified: the broker knows its keys only hashed).

    `key` is normalized first (`normalize`), so SecretError says what is wrong with it."""
    url = _key_url(normalize(key, SPACE_KEY))
    assert url is not None  # normalize checked that it decodes to one
    return url


# -- normalization ------------------------------------------------------------------------------

_INVISIBLE = "\ufeff\u200b\u200c\u200d\u2060"  # BOM / zero-width no-break space, zero-width (non-)joiners
_BRACKETED_PASTE = ("\x1b[200~", "\x1b[201~")  # what a terminal wraps a paste in (xterm's ctlseqs)
_ASSIGNMENT = re.compile(r"(?:export\s+|set\s+|\$env:)?[A-Za-z_][A-Za-z0-9_]*\s*=\s*", re.ASCII)
_QUOTES = {'"': '"', "'": "'", "`": "`", "\u201c": "\u201d", "\u2018": "\u2019"}  # and “…”, ‘…’
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_FILE_SUFFIX = re.compile(r"\.(txt|json|jwt|key|token|env)$", re.IGNORECASE)
_SPACE_NAMES = {"\t": "a tab", "\n": "a line break", "\r": "a line break", "\x0b": "a line feed", "\x0c": "a form feed"}


def normalize(pasted: str | bytes, kind: SecretKind = SPACE_TOKEN, *, source: str = "") -> str:
    """The secret in `pasted`, cleaned of what pasting adds around it (see the module docstring).

    `pasted`: text (an argument or environment variable, whose undecodable bytes Python keeps as
    surrogate escapes, PEP 383) or bytes (a file, standard input). `source` names where it came
    from in the message ("PAIR_SPACE_TOKEN", a file's path). Raises SecretError, a PairError whose
    message names the cause, when what is left does not fit the kind's grammar.
    """
    if len(pasted) > MAX_PASTE * 4:
        raise SecretError(kind, source, f"it is far longer than a {kind.name} ({len(pasted)} characters)", kind.hint)
    try:
        text = _unwrap(_text(pasted))
    except _Undecodable as exc:
        raise SecretError(kind, source, str(exc), "Save it as plain (UTF-8) text, or copy the token again.") from None
    diagnosis = _diagnose(text, kind)
    if diagnosis is not None:
        raise SecretError(kind, source, *diagnosis)
    return text


class _Undecodable(ValueError):
    pass


def _text(pasted: str | bytes) -> str:
    if isinstance(pasted, str):
        if not any(0xD800 <= ord(c) <= 0xDFFF or c == "\x00" for c in pasted):
            return pasted
        try:  # bytes Python could not decode (PEP 383), or NULs: judge the bytes themselves
            pasted = pasted.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raise _Undecodable("it holds characters that are not text (lone surrogates)") from None
    return _decode(pasted)


def _decode(data: bytes) -> str:
    """UTF-8 (with or without BOM), UTF-16 with a BOM or (for ASCII text) without one."""
    if data.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return _strict(data, "utf-32", "UTF-32")
    for bom, codec in ((b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if data.startswith(bom):
            rest = data[2:]
            if rest.isascii() and b"\x00" not in rest:  # UTF-16 whose NULs a shell dropped
                return rest.decode("ascii")
            return _strict(rest, codec, "UTF-16")
    if b"\x00" in data:
        even, odd = data[0::2], data[1::2]
        if len(data) % 2 == 0 and not odd.strip(b"\x00") and even.isascii():
            return _strict(data, "utf-16-le", "UTF-16")
        if len(data) % 2 == 0 and not even.strip(b"\x00") and odd.isascii():
            return _strict(data, "utf-16-be", "UTF-16")
        data = data.rstrip(b"\x00")  # a C string's terminator
        if b"\x00" in data:
            raise _Undecodable("it has NUL bytes (it is binary, or text in neither UTF-8 nor UTF-16)")
    return _strict(data, "utf-8-sig", "UTF-8")


def _strict(data: bytes, codec: str, label: str) -> str:
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        raise _Undecodable(f"it is not {label} text (byte 0x{data[exc.start]:02x} at position {exc.start})") from None


def _unwrap(text: str) -> str:
    text = _trim(text)
    for marker in _BRACKETED_PASTE:
        text = text.replace(marker, "")
    text = _trim(text)
    assignment = _ASSIGNMENT.match(text)
    if assignment:
        text = _trim(text[assignment.end() :])
    if len(text) >= 2 and _QUOTES.get(text[0]) == text[-1]:
        text = _trim(text[1:-1])
    return text


def _trim(text: str) -> str:
    while True:
        trimmed = text.strip().strip(_INVISIBLE)
        if trimmed == text:
            return text
        text = trimmed


def _diagnose(text: str, kind: SecretKind) -> Diagnosis | None:
    """None if `text` is a `kind`, else the first cause a person can act on."""
    if not text:
        return "it is empty", kind.hint
    if len(text) > MAX_PASTE:
        return f"it is far longer than a {kind.name} ({len(text)} characters)", kind.hint
    other = _other_secret(text, kind)
    if other:
        return other
    if "\u2026" in text or "..." in text:
        return "it was shortened for display (it has an ellipsis)", kind.hint
    if all(c in kind.alphabet for c in text):
        if kind.prefix and not text.startswith(kind.prefix):
            wrong: Diagnosis | None = (f"it does not start with {kind.prefix}", kind.hint)
        else:
            wrong = kind.shape(text)
        return _PATH if wrong and _looks_like_path(text) else wrong
    return _not_text_of(text, kind)


_PATH = (
    "it looks like a file path (the token is what the file holds, not its name)",
    'Pass the file\'s contents, e.g. "$(cat SPACE_ID.txt)" in a shell.',
)


def _looks_like_path(text: str) -> bool:
    return "/" in text or "\\" in text or text.startswith("~") or bool(_FILE_SUFFIX.search(text))


def _other_secret(text: str, kind: SecretKind) -> Diagnosis | None:
    for prefix, what in KNOWN_PREFIXES.items():
        if text.startswith(prefix) and prefix != kind.prefix:
            hint = kind.hint
            if prefix == SPACE_KEY_PREFIX:
                hint = "Give a Space key as PAIR_SPACE_KEY or with `pair spaces bootstrap --key`."
            return f"it is {what}, not a {kind.name}", hint
    if kind.prefix and text.startswith("eyJ") and text.count(".") == 2:  # a JWT's header is `{"…`
        return (
            f"it is a Space token (the contents of SPACE_ID.txt), not a {kind.name}",
            "Give a Space token as PAIR_SPACE_TOKEN or as `pair spaces bootstrap TOKEN`.",
        )
    return None


def _not_text_of(text: str, kind: SecretKind) -> Diagnosis:
    """Why text holding characters outside the kind's alphabet is not one."""
    if _URL.match(text):
        return f"it is a URL, not a {kind.name}", kind.hint
    if _looks_like_path(text):
        return _PATH
    for i, c in enumerate(text):
        if c.isspace():
            what = _SPACE_NAMES.get(c, "a space")
            return (
                f"it has {what} inside (after {i} characters)",
                f"A {kind.name} is one unbroken line: copy it again in one piece (a narrow terminal, an "
                "editor or an email may have wrapped it).",
            )
    for c in text:
        if c not in kind.alphabet:
            return f"it has {_describe(c)}, which a {kind.name} never has", kind.hint
    raise AssertionError("unreachable: some character is outside the alphabet")  # pragma: no cover


def _describe(c: str) -> str:
    if c in _QUOTES or c in _QUOTES.values():
        return f"a quote ({c}) left over (only one pair of surrounding quotes is removed)"
    if not c.isprintable():
        return f"the control character U+{ord(c):04X}"
    if c.isascii():
        return f"the character {c!r}"
    import unicodedata  # only to name a stray character

    return f"the character {c!r} (U+{ord(c):04X} {unicodedata.name(c, 'unnamed')})"


def unverified_claims(token: str) -> dict[str, object]:
    """A Space token's payload, read without checking it, to learn which broker (`iss`) to ask.

    `token` is normalized first (`normalize`), so SecretError says what is wrong with it.
    """
    parts = normalize(token).split(".")
    claims = _json_object(parts[1])
    assert claims is not None  # normalize checked that the payload decodes to an object
    return claims


def main(argv: list[str] | None = None) -> int:
    """`python -m pair.api.tokens [--kind space-token] [--source LABEL]`: install.sh's door.

    Reads a pasted secret from standard input, prints it normalized (exit 0), or prints
    `pair: error: …` and `pair: hint: …` to standard error (exit 1), in install.sh's own format.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pair.api.tokens", description=main.__doc__)
    parser.add_argument("--kind", choices=sorted(KINDS), default="space-token")
    parser.add_argument("--broker", action="store_true", help="print the broker URL a Space key names instead")
    parser.add_argument("--source", default="", help="where the secret came from, for the message")
    args = parser.parse_args(argv)
    try:
        secret = normalize(sys.stdin.buffer.read(MAX_PASTE * 4 + 4), KINDS[args.kind], source=args.source)
        print(space_key_broker(secret) if args.broker and KINDS[args.kind] is SPACE_KEY else secret)
    except SecretError as exc:
        print(f"pair: error: {exc.message}", file=sys.stderr)
        print(f"pair: hint: {exc.hint}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
