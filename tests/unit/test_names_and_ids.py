"""broker.names (Space names) and broker.credentials (ids, secrets, digests)."""

from __future__ import annotations

import hashlib
import re
import string

import pytest

from broker import credentials, names

SHAPE = re.compile(r"([a-z]+)_([a-z]+)")
BASE32_LOWER = set(string.ascii_lowercase + "234567")
URLSAFE = set(string.ascii_letters + string.digits + "-_")


def test_generated_names_are_valid_adjective_surname_pairs() -> None:
    for _ in range(500):
        name = names.generate()
        assert names.NAME_RE.fullmatch(name), name
        assert names.is_valid(name), name
        match = SHAPE.fullmatch(name)
        assert match, name
        assert match.group(1) in names.ADJECTIVES
        assert match.group(2) in names.SURNAMES


def test_every_word_combination_is_a_valid_name() -> None:
    # generate() may pick any pair, so every word must be plain lowercase letters and the longest
    # pair must still fit the 63-character rule.
    assert all(re.fullmatch(r"[a-z]+", w) for w in names.ADJECTIVES + names.SURNAMES)
    longest = f"{max(names.ADJECTIVES, key=len)}_{max(names.SURNAMES, key=len)}"
    assert names.is_valid(longest)


def test_word_lists_have_no_duplicates() -> None:
    assert len(set(names.ADJECTIVES)) == len(names.ADJECTIVES)
    assert len(set(names.SURNAMES)) == len(names.SURNAMES)
    assert len(names.ADJECTIVES) * len(names.SURNAMES) > 10_000


def test_generated_names_vary() -> None:
    assert len({names.generate() for _ in range(200)}) > 150


@pytest.mark.parametrize(
    "name",
    ["a", "0", "demo", "dynamic_stark", "my-space", "a-b_c-9", "9lives", "x" * 63, "a" + "-" * 62],
)
def test_valid_names(name: str) -> None:
    assert names.is_valid(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Demo",
        "DEMO",
        "demO",
        "-demo",
        "_demo",
        "x" * 64,
        "my space",
        " demo",
        "demo ",
        "demo\n",
        "my.space",
        "demo.pair",
        "a/b",
        "../etc",
        "dèmo",
        "demo!",
        "a:b",
    ],
)
def test_invalid_names(name: str) -> None:
    assert not names.is_valid(name)


def test_new_id_shape() -> None:
    ident = credentials.new_id("sp_")
    assert ident.startswith("sp_")
    body = ident.removeprefix("sp_")
    assert len(body) == 12
    assert set(body) <= BASE32_LOWER


def test_new_ids_are_unique() -> None:
    ids = [credentials.new_id("u_") for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(len(i) == len("u_") + 12 and set(i[2:]) <= BASE32_LOWER for i in ids)
    # The ids use the whole alphabet (they are random, not, say, a counter or a constant).
    assert set("".join(i[2:] for i in ids)) == BASE32_LOWER


@pytest.mark.parametrize("prefix", [credentials.AUTH_KEY, credentials.SESSION, credentials.AGENT])
def test_new_secret_carries_its_prefix(prefix: str) -> None:
    secret = credentials.new_secret(prefix)
    assert secret.startswith(prefix)
    body = secret.removeprefix(prefix)
    assert len(body) >= 43  # 256 bits of url-safe base64
    assert set(body) <= URLSAFE
    assert credentials.new_secret(prefix) != secret


def test_secret_prefixes_are_distinct_and_recognisable() -> None:
    prefixes = [credentials.AUTH_KEY, credentials.SESSION, credentials.AGENT]
    assert len(set(prefixes)) == 3
    assert all(p.startswith("pair_") and p.endswith("_") for p in prefixes)


def test_digest_is_sha256_hex() -> None:
    secret = credentials.new_secret(credentials.SESSION)
    value = credentials.digest(secret)
    assert value == hashlib.sha256(secret.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", value)
    assert credentials.digest(secret) == value
    assert credentials.digest(secret + "x") != value
    assert credentials.digest("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
