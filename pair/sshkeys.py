"""Parse and validate OpenSSH public keys, and compute their SHA256 fingerprints.

`pair verify` imports this module on every SSH login (sshd runs it as the AuthorizedKeysCommand), so it
must start fast: it imports only `binascii` and `hashlib` from the standard library. No dataclasses, no
typing at runtime, no regular expressions.

The wire format of a key blob (RFC 4251 section 5, RFC 4253/5656/8709, OpenSSH PROTOCOL.u2f) is a
sequence of uint32-length-prefixed strings and mpints:

    ssh-ed25519                         string type, string key(32)
    ecdsa-sha2-nistpN                   string type, string curve, string point(0x04 || X || Y)
    ssh-rsa                             string type, mpint e, mpint n
    sk-ssh-ed25519@openssh.com          string type, string key(32), string application
    sk-ecdsa-sha2-nistp256@openssh.com  string type, string curve, string point, string application
"""

from __future__ import annotations

import binascii
import hashlib

__all__ = [
    "SUPPORTED_KEY_TYPES",
    "InvalidKeyError",
    "PublicKey",
    "fingerprint",
    "fingerprint_b64",
    "parse_public_key",
]

MIN_RSA_BITS = 2048
MAX_RSA_BITS = 16384  # OpenSSH refuses larger moduli (SSH_RSA_MAXIMUM_MODULUS_SIZE)

_ED25519 = "ssh-ed25519"
_RSA = "ssh-rsa"
_SK_ED25519 = "sk-ssh-ed25519@openssh.com"
_SK_ECDSA = "sk-ecdsa-sha2-nistp256@openssh.com"

# Short-Weierstrass NIST curves y^2 = x^3 - 3x + b (mod p): name -> (coordinate bytes, p, b, bits).
_CURVES: dict[str, tuple[int, int, int, int]] = {
    "nistp256": (
        32,
        2**256 - 2**224 + 2**192 + 2**96 - 1,
        0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B,
        256,
    ),
    "nistp384": (
        48,
        2**384 - 2**128 - 2**96 + 2**32 - 1,
        0xB3312FA7E23EE7E4988E056BE3F82D19181D9C6EFE8141120314088F5013875AC656398D8A2ED19D2A85C8EDD3EC2AEF,
        384,
    ),
    "nistp521": (
        66,
        2**521 - 1,
        0x0051953EB9618E1C9A1F929A21A0B68540EEA2DA725B99B315F3B8B489918EF109E156193951EC7E937B1652C0BD3BB1BF073573DF883D2C34F1EF451FD46B503F00,
        521,
    ),
}

# key type -> ECDSA curve name carried inside the blob (None for the ed25519 / RSA families).
_KEY_TYPES: dict[str, str | None] = {
    _ED25519: None,
    "ecdsa-sha2-nistp256": "nistp256",
    "ecdsa-sha2-nistp384": "nistp384",
    "ecdsa-sha2-nistp521": "nistp521",
    _RSA: None,
    _SK_ED25519: None,
    _SK_ECDSA: "nistp256",
}

SUPPORTED_KEY_TYPES: tuple[str, ...] = tuple(_KEY_TYPES)

_CERT_SUFFIX = "-cert-v01@openssh.com"
_DSA = "ssh-dss"
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

# Keywords that may start an authorized_keys line (sshd(8) "AUTHORIZED_KEYS FILE FORMAT").
_OPTION_WORDS = frozenset(
    {
        "agent-forwarding", "cert-authority", "command", "environment", "expiry-time", "from",
        "no-agent-forwarding", "no-port-forwarding", "no-pty", "no-touch-required", "no-user-rc",
        "no-x11-forwarding", "permitlisten", "permitopen", "port-forwarding", "principals", "pty",
        "restrict", "tunnel", "user-rc", "verify-required", "x11-forwarding",
    }
)  # fmt: skip

_HINT_PUB = "Paste the single line from your public key file, e.g. the contents of ~/.ssh/id_ed25519.pub."
_HINT_COPY = (
    "Copy the whole line from your .pub file again (it may have been cut, wrapped or edited), "
    "e.g. with `cat ~/.ssh/id_ed25519.pub`."
)
_HINT_NEW_KEY = "Generate a modern key with `ssh-keygen -t ed25519` and use its .pub file."


class InvalidKeyError(ValueError):
    """A public key was refused. `message` says why in one sentence; `hint` says what to do about it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class PublicKey:
    """A validated OpenSSH public key. `blob` is the raw wire-format key (what the base64 decodes to)."""

    __slots__ = ("bits", "blob", "comment", "key_type")

    def __init__(self, key_type: str, blob: bytes, comment: str, bits: int) -> None:
        self.key_type = key_type
        self.blob = blob
        self.comment = comment
        self.bits = bits

    @property
    def fingerprint(self) -> str:
        """`SHA256:<base64>` exactly as `ssh-keygen -l` prints it."""
        return fingerprint(self.blob)

    def openssh(self) -> str:
        """`<type> <base64>`: the key in authorized_keys form, without the comment."""
        return f"{self.key_type} {_b64encode(self.blob)}"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PublicKey):
            return NotImplemented
        return (self.key_type, self.blob, self.comment, self.bits) == (
            other.key_type,
            other.blob,
            other.comment,
            other.bits,
        )

    def __hash__(self) -> int:
        return hash((self.key_type, self.blob, self.comment, self.bits))

    def __repr__(self) -> str:
        return (
            f"PublicKey(key_type={self.key_type!r}, bits={self.bits}, "
            f"fingerprint={self.fingerprint!r}, comment={self.comment!r})"
        )


def fingerprint(blob: bytes) -> str:
    """SHA256 fingerprint of a raw key blob, as `ssh-keygen -l` prints it: `SHA256:` + unpadded base64."""
    return "SHA256:" + _b64encode(hashlib.sha256(blob).digest()).rstrip("=")


def fingerprint_b64(blob_b64: str) -> str:
    """SHA256 fingerprint of a base64 key blob (what sshd passes as %k). Raises InvalidKeyError."""
    return fingerprint(_b64decode(blob_b64))


def parse_public_key(text: str) -> PublicKey:
    """Parse and validate one public key line (`type base64 [comment]`), as found in a .pub file."""
    if not text or not text.strip():
        raise InvalidKeyError("The public key is empty.", _HINT_PUB)
    _refuse_other_formats(text)
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > 1:
        raise InvalidKeyError(
            f"The input has {len(lines)} lines, but exactly one public key line is expected.",
            "Paste a single key, e.g. the contents of ~/.ssh/id_ed25519.pub; "
            "if it was wrapped over several lines, join it back into one line.",
        )
    fields = lines[0].split(None, 2)
    key_type = fields[0]
    _check_key_type(key_type, fields)
    if len(fields) < 2:
        raise InvalidKeyError(f"The {key_type} key has no key data after its type.", _HINT_COPY)
    blob = _b64decode(fields[1])
    comment = fields[2].strip() if len(fields) > 2 else ""
    bits = _check_blob(key_type, blob)
    return PublicKey(key_type, blob, comment, bits)


# --- helpers ----------------------------------------------------------------------------------------


def _b64encode(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def _b64decode(text: str) -> bytes:
    """Strict base64 (binascii alone silently skips junk characters before Python 3.11's strict_mode)."""
    bad = InvalidKeyError("The key data is not valid base64.", _HINT_COPY)
    try:
        raw = text.strip().encode("ascii")
    except UnicodeEncodeError:
        raise bad from None
    body = raw.rstrip(b"=")
    if not raw or len(raw) % 4 or len(raw) - len(body) > 2 or body.translate(None, _B64_ALPHABET):
        raise bad
    try:
        return binascii.a2b_base64(raw)
    except binascii.Error:
        raise bad from None


def _refuse_other_formats(text: str) -> None:
    """Recognise the things people paste instead of an OpenSSH public key line."""
    if "PRIVATE KEY" in text or "PuTTY-User-Key-File" in text:
        raise InvalidKeyError(
            "This is a private key, not a public key.",
            "Use the matching .pub file instead (e.g. ~/.ssh/id_ed25519.pub) and never share your "
            "private key with anyone.",
        )
    if "BEGIN SSH2 PUBLIC KEY" in text:
        raise InvalidKeyError(
            "This is an RFC 4716 (SSH2/PuTTY) public key, not an OpenSSH public key line.",
            "Convert it with `ssh-keygen -i -f KEYFILE` and paste the line it prints.",
        )
    if "BEGIN PUBLIC KEY" in text or "BEGIN RSA PUBLIC KEY" in text:
        raise InvalidKeyError(
            "This is a PEM public key, not an OpenSSH public key line.",
            "Convert it with `ssh-keygen -i -m PKCS8 -f KEYFILE` and paste the line it prints.",
        )


def _check_key_type(key_type: str, fields: list[str]) -> None:
    if key_type in _KEY_TYPES:
        return
    if key_type == _DSA:
        raise InvalidKeyError(
            "DSA (ssh-dss) keys are not accepted: they are deprecated and disabled in current OpenSSH.",
            _HINT_NEW_KEY,
        )
    if key_type.endswith(_CERT_SUFFIX):
        raise InvalidKeyError(
            f"This is an SSH certificate ({key_type}), not a plain public key.",
            "Paste the public key itself (the .pub file without -cert in its name), e.g. ~/.ssh/id_ed25519.pub.",
        )
    if key_type.startswith("AAAA"):  # every key blob starts with a small length: base64 "AAAA"
        raise InvalidKeyError(
            "The line is missing the key type before the key data.",
            "Paste the whole line from your .pub file; it starts with the type, e.g. `ssh-ed25519 AAAA...`.",
        )
    tokens = " ".join(fields).split()
    later_type = next((t for t in tokens[1:] if _looks_like_key_type(t)), None)
    first_word = key_type.split("=", 1)[0].split(",", 1)[0].lower()
    if later_type is not None or '"' in key_type or first_word in _OPTION_WORDS:
        where = f" before `{later_type}`" if later_type is not None else ""
        raise InvalidKeyError(
            "The line starts with authorized_keys options instead of a key type.",
            f"Remove the options{where} so the line starts with the key type, e.g. `ssh-ed25519 AAAA...`.",
        )
    raise InvalidKeyError(
        f"Unsupported key type {key_type!r}.",
        f"Use one of: {', '.join(SUPPORTED_KEY_TYPES)}. " + _HINT_NEW_KEY,
    )


def _looks_like_key_type(token: str) -> bool:
    return token in _KEY_TYPES or token == _DSA or token.endswith(_CERT_SUFFIX)


class _BlobError(Exception):
    """Internal: the blob does not decode; carries the detail for the user-facing message."""


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def string(self, what: str) -> bytes:
        end = self.pos + 4
        if end > len(self.data):
            raise _BlobError(f"it ends before the {what}")
        size = int.from_bytes(self.data[self.pos : end], "big")
        if end + size > len(self.data):
            raise _BlobError(f"the {what} is cut short")
        self.pos = end + size
        return self.data[end : self.pos]

    def text(self, what: str) -> str:
        try:
            return self.string(what).decode("ascii")
        except UnicodeDecodeError:
            raise _BlobError(f"the {what} is not text") from None

    def mpint(self, what: str) -> int:
        raw = self.string(what)
        if raw and raw[0] & 0x80:
            raise _BlobError(f"the {what} is negative")
        return int.from_bytes(raw, "big")

    def end(self) -> None:
        extra = len(self.data) - self.pos
        if extra:
            raise _BlobError(f"it has {extra} unexpected trailing byte{'s' if extra != 1 else ''}")


def _check_blob(key_type: str, blob: bytes) -> int:
    """Decode and validate `blob` against the declared `key_type`; return the key size in bits."""
    reader = _Reader(blob)
    try:
        inner = reader.text("key type")
        if inner != key_type:
            if not _looks_like_key_type(inner):
                raise _BlobError(f"it starts with {inner[:40]!r} instead of a key type")
            raise InvalidKeyError(
                f"The key data is of type {inner}, but the line says {key_type}.",
                "Do not edit the key line by hand. " + _HINT_COPY,
            )
        curve = _KEY_TYPES[key_type]
        if curve is not None:
            bits = _read_ecdsa(reader, curve)
        elif key_type == _RSA:
            bits = _read_rsa(reader)
        else:
            if len(reader.string("ed25519 public key")) != 32:
                raise _BlobError("the ed25519 public key is not 32 bytes")
            bits = 256
        if key_type.startswith("sk-"):
            reader.string("security-key application")
        reader.end()
    except _BlobError as exc:
        raise InvalidKeyError(
            f"The {key_type} key data is corrupted: {exc}.",
            _HINT_COPY,
        ) from None
    return bits


def _read_ecdsa(reader: _Reader, curve: str) -> int:
    name = reader.text("curve name")
    if name != curve:
        raise _BlobError(f"its curve is {name[:40]!r} instead of {curve!r}")
    size, p, b, bits = _CURVES[curve]
    point = reader.string("curve point")
    if len(point) != 1 + 2 * size or point[0] != 0x04:
        raise _BlobError(f"the curve point is not an uncompressed {curve} point")
    x = int.from_bytes(point[1 : 1 + size], "big")
    y = int.from_bytes(point[1 + size :], "big")
    if x >= p or y >= p or (y * y - (x * x * x - 3 * x + b)) % p:
        raise _BlobError(f"the point is not on the {curve} curve")
    return bits


def _read_rsa(reader: _Reader) -> int:
    e = reader.mpint("RSA exponent")
    n = reader.mpint("RSA modulus")
    bits = n.bit_length()
    if e < 3 or not e & 1:
        raise _BlobError("the RSA exponent is invalid")
    if not n & 1:
        raise _BlobError("the RSA modulus is invalid")
    reader.end()  # report trailing bytes as corruption before judging the size
    if bits < MIN_RSA_BITS:
        raise InvalidKeyError(
            f"This RSA key is only {bits} bits; at least {MIN_RSA_BITS} bits are required.",
            _HINT_NEW_KEY,
        )
    if bits > MAX_RSA_BITS:
        raise InvalidKeyError(
            f"This RSA key is {bits} bits; OpenSSH accepts at most {MAX_RSA_BITS} bits.",
            _HINT_NEW_KEY,
        )
    return bits
