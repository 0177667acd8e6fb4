"""Sealing secrets the database keeps (the token signing keys) with the broker's encryption key,
so that a dump of the database alone does not reveal them: AES-256-GCM (NIST SP 800-38D) from
`cryptography`, a random 96-bit nonce per seal, and the record's name as associated data, so a
sealed value moved to another record does not open.

The key is 32 random bytes, written in base64 (`openssl rand -base64 32`), given to every
replica as PAIR_BROKER_ENCRYPTION_KEY or in a file (--encryption-key-file). Losing it loses
the sealed keys: tokens they signed stop verifying and the broker makes a new key.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pair.api.errors import PairError

KEY_BYTES = 32
NONCE_BYTES = 12
MAKE_ONE = "Make one with: openssl rand -base64 32 (and give every replica the same)."


class SealError(Exception):
    """A sealed value that this key does not open: another key sealed it, or it was altered."""


class EncryptionKeyError(PairError):
    """The encryption key setting is unusable: one sentence and a hint."""


def parse_key(text: str, label: str) -> bytes:
    """The 32-byte key that `text` (base64, standard or URL-safe alphabet, surrounding
    whitespace ignored) holds. EncryptionKeyError, naming the setting `label`, otherwise; the
    text itself is never repeated."""
    value = text.strip()
    try:
        key = base64.b64decode(value.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise EncryptionKeyError(f"{label} is not base64.", MAKE_ONE) from None
    if len(key) != KEY_BYTES:
        raise EncryptionKeyError(f"{label} holds {len(key)} bytes; the key is {KEY_BYTES} bytes.", MAKE_ONE)
    return key


def read_key_file(path: Path) -> bytes:
    """The key in `path`, a file only its owner may read (like any secret: 0600). EncryptionKeyError
    when it cannot be read, is readable by others, or holds no key."""
    try:
        st = path.stat()
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "it is not text"
        raise EncryptionKeyError(f"Cannot read the encryption key file {path}: {why}.", MAKE_ONE) from None
    if st.st_mode & 0o077 and st.st_uid == os.getuid():
        raise EncryptionKeyError(
            f"The encryption key file {path} is readable by others.", f"Make it private: chmod 600 {path}"
        )
    return parse_key(text, f"The encryption key file {path}")


class Sealer:
    """Seals and opens values with one key."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, name: str, plaintext: bytes) -> str:
        """`plaintext` sealed for the record `name`: base64 of nonce + ciphertext + tag."""
        nonce = os.urandom(NONCE_BYTES)
        return base64.b64encode(nonce + self._aead.encrypt(nonce, plaintext, name.encode())).decode()

    def open(self, name: str, sealed: str) -> bytes:
        """What `seal(name, …)` sealed. SealError when this key did not seal it for `name`."""
        try:
            raw = base64.b64decode(sealed, validate=True)
            return self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], name.encode())
        except (binascii.Error, ValueError, InvalidTag):
            raise SealError(name) from None
