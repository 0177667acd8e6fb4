"""pair.sshkeys against real keys made by ssh-keygen, and against everything people paste by mistake."""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pair.sshkeys import (
    InvalidKeyError,
    PublicKey,
    fingerprint,
    fingerprint_b64,
    parse_public_key,
)

REPO = Path(__file__).resolve().parents[2]
COMMENT = "comment with spaces"

needs_ssh_keygen = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed")

# (ssh-keygen -t, -b, our key_type, ssh-keygen -l's type label)
KEY_KINDS = [
    ("ed25519", None, "ssh-ed25519", "ED25519"),
    ("ecdsa", 256, "ecdsa-sha2-nistp256", "ECDSA"),
    ("ecdsa", 384, "ecdsa-sha2-nistp384", "ECDSA"),
    ("ecdsa", 521, "ecdsa-sha2-nistp521", "ECDSA"),
    ("rsa", 2048, "ssh-rsa", "RSA"),
    ("rsa", 3072, "ssh-rsa", "RSA"),
]


def keygen(directory: Path, key_type: str, bits: int | None = None, comment: str = COMMENT, name: str = "") -> Path:
    """Generate a key pair with ssh-keygen; return the private key path (the .pub sits next to it)."""
    path = directory / (name or f"{key_type}{bits or ''}")
    size = ["-b", str(bits)] if bits is not None else []
    cmd = ["ssh-keygen", "-q", "-N", "", "-t", key_type, *size, "-C", comment, "-f", str(path)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    return path


def keygen_l(pub: Path) -> tuple[int, str, str, str]:
    """`ssh-keygen -l -f pub` parsed as (bits, fingerprint, comment, type label)."""
    out = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(pub)], check=True, capture_output=True, text=True, timeout=30
    ).stdout.strip()
    bits, fp, rest = out.split(" ", 2)
    comment, label = rest.rsplit(" (", 1)
    return int(bits), fp, comment, label.rstrip(")")


def wire(*parts: bytes) -> bytes:
    """SSH wire format: each part as a uint32-length-prefixed string."""
    return b"".join(len(p).to_bytes(4, "big") + p for p in parts)


def line(key_type: str, blob: bytes, comment: str = "") -> str:
    return f"{key_type} {base64.b64encode(blob).decode()} {comment}".rstrip()


def refused(text: str) -> InvalidKeyError:
    with pytest.raises(InvalidKeyError) as info:
        parse_public_key(text)
    exc = info.value
    assert str(exc) == exc.message
    assert exc.message.endswith("."), exc.message
    assert exc.hint, exc.message
    return exc


@pytest.fixture(scope="module")
def keydir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen not installed")
    return tmp_path_factory.mktemp("sshkeys")


@pytest.fixture(scope="module")
def ed25519(keydir: Path) -> Path:
    return keygen(keydir, "ed25519", name="user")


@pytest.fixture(scope="module")
def ed25519_line(ed25519: Path) -> str:
    return ed25519.with_suffix(".pub").read_text()


@pytest.fixture(scope="module")
def ed25519_blob(ed25519_line: str) -> bytes:
    return base64.b64decode(ed25519_line.split()[1])


@pytest.fixture(scope="module")
def p256_point(keydir: Path) -> bytes:
    pub = keygen(keydir, "ecdsa", 256, name="p256").with_suffix(".pub").read_text()
    return base64.b64decode(pub.split()[1])[-65:]


# --- real keys: same answers as ssh-keygen -l ---------------------------------------------------------


@needs_ssh_keygen
@pytest.mark.parametrize(("kt", "bits", "key_type", "label"), KEY_KINDS)
def test_real_keys_match_ssh_keygen(tmp_path: Path, kt: str, bits: int | None, key_type: str, label: str) -> None:
    pub = keygen(tmp_path, kt, bits).with_suffix(".pub")
    text = pub.read_text()
    want_bits, want_fp, want_comment, want_label = keygen_l(pub)
    assert want_label == label

    key = parse_public_key(text)

    assert isinstance(key, PublicKey)
    assert key.key_type == key_type
    assert key.bits == want_bits == (bits or 256)
    assert key.fingerprint == want_fp
    assert key.comment == want_comment == COMMENT
    assert key.openssh() == " ".join(text.split()[:2])
    assert key.blob == base64.b64decode(text.split()[1])
    assert fingerprint(key.blob) == want_fp
    assert fingerprint_b64(text.split()[1]) == want_fp


def test_whitespace_and_comment_handling(ed25519_line: str) -> None:
    type_, b64 = ed25519_line.split()[:2]
    key = parse_public_key(f"  \t{type_}\t {b64}   two  spaced\twords  \r\n\n")
    assert key.comment == "two  spaced\twords"
    assert key.openssh() == f"{type_} {b64}"
    assert parse_public_key(f"{type_} {b64}").comment == ""
    assert parse_public_key(f"{type_} {b64}\n") == parse_public_key(f"{type_} {b64}")


@needs_ssh_keygen
def test_rsa_1024_refused_naming_its_size(tmp_path: Path) -> None:
    text = keygen(tmp_path, "rsa", 1024).with_suffix(".pub").read_text()
    exc = refused(text)
    assert "1024" in exc.message
    assert "2048" in exc.message
    assert "ssh-keygen -t ed25519" in exc.hint


# --- security keys: crafted blobs (no hardware here), still checked against ssh-keygen -l --------------


def test_sk_ed25519_crafted(keydir: Path, ed25519_blob: bytes) -> None:
    blob = wire(b"sk-ssh-ed25519@openssh.com", ed25519_blob[-32:], b"ssh:")
    pub = keydir / "sk-ed25519.pub"
    pub.write_text(line("sk-ssh-ed25519@openssh.com", blob, "yubi key") + "\n")

    key = parse_public_key(pub.read_text())

    assert (key.key_type, key.bits, key.comment) == ("sk-ssh-ed25519@openssh.com", 256, "yubi key")
    assert (key.bits, key.fingerprint, key.comment, "ED25519-SK") == keygen_l(pub)


def test_sk_ecdsa_crafted(keydir: Path, p256_point: bytes) -> None:
    blob = wire(b"sk-ecdsa-sha2-nistp256@openssh.com", b"nistp256", p256_point, b"ssh:pair")
    pub = keydir / "sk-ecdsa.pub"
    pub.write_text(line("sk-ecdsa-sha2-nistp256@openssh.com", blob, "yubi key") + "\n")

    key = parse_public_key(pub.read_text())

    assert (key.key_type, key.bits) == ("sk-ecdsa-sha2-nistp256@openssh.com", 256)
    assert (key.bits, key.fingerprint, key.comment, "ECDSA-SK") == keygen_l(pub)


def test_sk_keys_need_their_application(ed25519_blob: bytes, p256_point: bytes) -> None:
    refused(line("sk-ssh-ed25519@openssh.com", wire(b"sk-ssh-ed25519@openssh.com", ed25519_blob[-32:])))
    sk_ecdsa = "sk-ecdsa-sha2-nistp256@openssh.com"
    refused(line(sk_ecdsa, wire(sk_ecdsa.encode(), b"nistp256", p256_point)))


# --- refusals -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "\n\n", " \t\r\n"])
def test_empty_refused(text: str) -> None:
    assert "empty" in refused(text).message


def test_private_key_refused(ed25519: Path) -> None:
    exc = refused(ed25519.read_text())
    assert "private key" in exc.message
    assert ".pub" in exc.hint
    assert "never share" in exc.hint


def test_pem_private_key_refused() -> None:
    exc = refused("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\n")
    assert "private key" in exc.message


def test_rfc4716_and_pem_public_keys_get_a_conversion_hint(ed25519_line: str) -> None:
    b64 = ed25519_line.split()[1]
    ssh2 = f'---- BEGIN SSH2 PUBLIC KEY ----\nComment: "x"\n{b64}\n---- END SSH2 PUBLIC KEY ----\n'
    assert "ssh-keygen -i" in refused(ssh2).hint
    pem = "-----BEGIN PUBLIC KEY-----\nMCow\n-----END PUBLIC KEY-----\n"
    assert "ssh-keygen -i -m PKCS8" in refused(pem).hint


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b64: b64[:10] + "*" + b64[11:],  # a character outside the alphabet
        lambda b64: b64[:-1],  # length no longer a multiple of 4
        lambda b64: b64[:10] + "é" + b64[11:],  # not even ASCII
        lambda b64: b64[:-4] + "A===",  # too much padding
        lambda b64: b64[:8] + "=" + b64[9:],  # padding in the middle
    ],
    ids=["bad-char", "bad-length", "non-ascii", "over-padded", "inner-padding"],
)
def test_corrupted_base64_refused(ed25519_line: str, mangle: Callable[[str], str]) -> None:
    type_, b64, comment = ed25519_line.split(None, 2)
    exc = refused(f"{type_} {mangle(b64)} {comment}")
    assert "base64" in exc.message


def test_wrong_inner_type_refused(ed25519_line: str) -> None:
    exc = refused("ssh-rsa " + ed25519_line.split(None, 1)[1])
    assert "ssh-ed25519" in exc.message
    assert "ssh-rsa" in exc.message


@pytest.mark.parametrize("cut", [1, 5, 31, 33, 40])
def test_truncated_blob_refused(ed25519_blob: bytes, cut: int) -> None:
    refused(line("ssh-ed25519", ed25519_blob[:-cut]))


def test_truncated_base64_text_refused(ed25519_line: str) -> None:
    type_, b64 = ed25519_line.split()[:2]
    refused(f"{type_} {b64[:40]}")


def test_missing_key_data_refused() -> None:
    assert "no key data" in refused("ssh-ed25519").message


def test_trailing_bytes_refused(ed25519_blob: bytes) -> None:
    assert "trailing" in refused(line("ssh-ed25519", ed25519_blob + b"\0")).message


def test_wrong_ed25519_length_refused(ed25519_blob: bytes) -> None:
    refused(line("ssh-ed25519", wire(b"ssh-ed25519", ed25519_blob[-32:] + b"!")))


def test_garbage_blob_refused() -> None:
    refused(line("ssh-ed25519", b"\xff" * 40))
    refused(line("ssh-ed25519", wire(b"hello", b"world")))


def test_ecdsa_checks(p256_point: bytes) -> None:
    good = wire(b"ecdsa-sha2-nistp256", b"nistp256", p256_point)
    assert parse_public_key(line("ecdsa-sha2-nistp256", good)).bits == 256
    # curve name inside the blob does not match the type
    refused(line("ecdsa-sha2-nistp384", wire(b"ecdsa-sha2-nistp384", b"nistp256", p256_point)))
    refused(line("ecdsa-sha2-nistp256", wire(b"ecdsa-sha2-nistp256", b"nistp384", p256_point)))
    # compressed point, wrong length, point not on the curve
    compressed = bytes([2 + (p256_point[-1] & 1)]) + p256_point[1:33]
    refused(line("ecdsa-sha2-nistp256", wire(b"ecdsa-sha2-nistp256", b"nistp256", compressed)))
    refused(line("ecdsa-sha2-nistp256", wire(b"ecdsa-sha2-nistp256", b"nistp256", p256_point[:-1])))
    off_curve = p256_point[:-1] + bytes([p256_point[-1] ^ 1])
    off_blob = wire(b"ecdsa-sha2-nistp256", b"nistp256", off_curve)
    assert "not on the nistp256 curve" in refused(line("ecdsa-sha2-nistp256", off_blob)).message


def test_rsa_blob_checks() -> None:
    n = (1 << 3071) | 1
    good = wire(b"ssh-rsa", (65537).to_bytes(3, "big"), b"\0" + n.to_bytes(384, "big"))
    assert parse_public_key(line("ssh-rsa", good)).bits == 3072
    negative = wire(b"ssh-rsa", (65537).to_bytes(3, "big"), n.to_bytes(384, "big"))  # high bit, no 0 pad
    assert "negative" in refused(line("ssh-rsa", negative)).message
    even_e = wire(b"ssh-rsa", (65536).to_bytes(3, "big"), b"\0" + n.to_bytes(384, "big"))
    refused(line("ssh-rsa", even_e))
    huge = (1 << 16400) | 1
    too_big = wire(b"ssh-rsa", b"\x03", b"\0" + huge.to_bytes(2051, "big"))
    assert "16384" in refused(line("ssh-rsa", too_big)).message


@pytest.mark.parametrize(
    "prefix",
    [
        'command="echo hi" ',
        "no-pty ",
        'restrict,from="10.0.0.1" ',
        'environment="A=b c" no-pty ',
        "cert-authority ",
    ],
)
def test_authorized_keys_options_refused(ed25519_line: str, prefix: str) -> None:
    exc = refused(prefix + ed25519_line)
    assert "options" in exc.message
    assert "ssh-ed25519" in exc.hint


@needs_ssh_keygen
def test_certificate_refused(keydir: Path, ed25519: Path) -> None:
    ca = keygen(keydir, "ed25519", comment="ca", name="ca")
    subprocess.run(
        ["ssh-keygen", "-q", "-s", str(ca), "-I", "who", "-n", "who", str(ed25519.with_suffix(".pub"))],
        check=True,
        capture_output=True,
        timeout=30,
    )
    cert = ed25519.parent / f"{ed25519.name}-cert.pub"
    text = cert.read_text()
    assert text.startswith("ssh-ed25519-cert-v01@openssh.com ")
    exc = refused(text)
    assert "certificate" in exc.message
    # the certificate blob under a plain type is refused too (inner type mismatch)
    refused("ssh-ed25519 " + text.split(None, 1)[1])


def test_dsa_refused() -> None:
    blob = wire(b"ssh-dss", b"\x01" * 129, b"\x01" * 21, b"\x01" * 128, b"\x01" * 128)
    exc = refused(line("ssh-dss", blob, "old key"))
    assert "DSA" in exc.message
    assert "ssh-keygen -t ed25519" in exc.hint


def test_two_lines_refused(ed25519_line: str, p256_point: bytes) -> None:
    ecdsa = line("ecdsa-sha2-nistp256", wire(b"ecdsa-sha2-nistp256", b"nistp256", p256_point))
    assert "2 lines" in refused(ed25519_line + ecdsa + "\n").message
    assert "2 lines" in refused(ed25519_line + "\n\n" + ed25519_line).message


def test_unknown_and_missing_types_refused(ed25519_line: str) -> None:
    b64 = ed25519_line.split()[1]
    assert "ssh-foo" in refused(f"ssh-foo {b64}").message
    assert "ssh-ed25519" in refused(f"ssh-foo {b64}").hint
    assert "missing the key type" in refused(f"{b64} me@laptop").message
    assert "missing the key type" in refused(base64.b64encode(b"\0\0\0\7ssh-rsa").decode()).message  # with "="
    assert "Unsupported" in refused(f"foo=bar {b64}").message
    refused(f"rsa-sha2-256 {b64}")


def test_fingerprint_b64(ed25519_line: str, ed25519_blob: bytes) -> None:
    b64 = ed25519_line.split()[1]
    fp = fingerprint_b64(b64)
    assert fp == fingerprint(ed25519_blob) == parse_public_key(ed25519_line).fingerprint
    assert fp.startswith("SHA256:")
    assert not fp.endswith("=")
    assert len(fp) == len("SHA256:") + 43
    assert fingerprint_b64(f" {b64}\n") == fp
    for bad in ["", "not base64!", b64[:-1], b64[:10] + "*" + b64[11:], "AAAA\u00e9AAA"]:
        with pytest.raises(InvalidKeyError):
            fingerprint_b64(bad)


def test_fingerprint_known_vector() -> None:
    # sha256(b"") in ssh-keygen's notation: base64 of the digest, padding stripped
    assert fingerprint(b"") == "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"


def test_error_pickles_with_hint() -> None:
    import pickle

    exc = InvalidKeyError("Bad key.", "Do this.")
    back = pickle.loads(pickle.dumps(exc))  # noqa: S301 - our own object
    assert isinstance(back, InvalidKeyError)
    assert (str(back), back.message, back.hint) == ("Bad key.", "Bad key.", "Do this.")


# --- startup cost -------------------------------------------------------------------------------------


def test_import_pulls_in_only_the_standard_library() -> None:
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import pair.sshkeys\n"
        "print('\\n'.join(sorted(set(sys.modules) - before)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], cwd=REPO, check=True, capture_output=True, text=True, timeout=60
    ).stdout.split()
    assert "pair.sshkeys" in out
    outside = [m for m in out if m.split(".")[0] not in sys.stdlib_module_names and m.split(".")[0] != "pair"]
    assert outside == []
    assert {m for m in out if m.split(".")[0] == "pair"} <= {"pair", "pair.sshkeys"}
    heavy = {"re", "typing", "dataclasses", "enum", "subprocess", "json", "pathlib"}
    assert heavy.isdisjoint(out), sorted(heavy.intersection(out))
