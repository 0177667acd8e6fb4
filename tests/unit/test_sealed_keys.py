"""Signing keys sealed in the database (broker.sealing, broker.sealed_keys), on every store
backend: what the key setting accepts, what a dump shows, several replicas sharing the keys,
a lost encryption key, and a SQLite data dir's key files moving in."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.sealed_keys import SealedKeyring, UnreadableKeys
from broker.sealing import KEY_BYTES, EncryptionKeyError, Sealer, SealError, parse_key, read_key_file
from broker.signing import Keyring, TokenInvalid
from broker.store import Store
from pair.api.models import SpaceTokenClaims
from pair.api.tokens import AUDIENCE
from tests.support import stores
from tests.support.stores import NOW, Backend

RETAIN = 3600
KEY = bytes(range(32))


@given(st.binary(max_size=64), st.booleans(), st.sampled_from(["", " ", "\n", "\r\n"]))
def test_an_encryption_key_is_32_bytes_of_base64_in_either_alphabet(raw: bytes, urlsafe: bool, space: str) -> None:
    text = (base64.urlsafe_b64encode(raw) if urlsafe else base64.b64encode(raw)).decode() + space
    if len(raw) == KEY_BYTES:
        assert parse_key(text, "PAIR_BROKER_ENCRYPTION_KEY") == raw
    else:
        with pytest.raises(EncryptionKeyError) as refused:
            parse_key(text, "PAIR_BROKER_ENCRYPTION_KEY")
        assert refused.value.message.startswith("PAIR_BROKER_ENCRYPTION_KEY holds")
        assert "openssl rand -base64 32" in (refused.value.hint or "")


@given(st.text(max_size=40))
def test_a_key_setting_that_is_not_base64_is_refused_without_repeating_it(text: str) -> None:
    pasted = "~leaked" + text  # "~" is in neither base64 alphabet
    with pytest.raises(EncryptionKeyError) as refused:
        parse_key(pasted, "PAIR_BROKER_ENCRYPTION_KEY")
    assert refused.value.message == "PAIR_BROKER_ENCRYPTION_KEY is not base64."


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "encryption.key"
    path.write_text(base64.b64encode(KEY).decode() + "\n")
    path.chmod(0o644)
    with pytest.raises(EncryptionKeyError, match="readable by others"):
        read_key_file(path)
    path.chmod(0o600)
    assert read_key_file(path) == KEY


def test_a_sealed_value_opens_only_with_its_key_and_as_its_own_record() -> None:
    sealer = Sealer(KEY)
    sealed = sealer.seal("signing_keys/k1", b"secret")
    assert b"secret" not in base64.b64decode(sealed)
    assert sealer.open("signing_keys/k1", sealed) == b"secret"
    assert sealer.seal("signing_keys/k1", b"secret") != sealed  # a fresh nonce each time
    with pytest.raises(SealError):
        sealer.open("signing_keys/k2", sealed)  # moved to another row
    with pytest.raises(SealError):
        Sealer(os.urandom(32)).open("signing_keys/k1", sealed)
    with pytest.raises(SealError):
        sealer.open("signing_keys/k1", sealed[:-4] + "AAAA")


# -- on every backend -----------------------------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with stores.backend(request, request.param, tmp_path) as opened:
        yield opened


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    opened = await backend.open()
    yield opened
    await opened.close()


def claims(jti: str = "j1") -> SpaceTokenClaims:
    return SpaceTokenClaims(iss="http://b", aud=AUDIENCE, sub="sp_1", iat=NOW, nbf=NOW, exp=NOW + 60, jti=jti)


@pytest.mark.anyio
async def test_a_dump_of_the_database_reveals_no_private_key(store: Store, backend: Backend) -> None:
    keyring = SealedKeyring(store, Sealer(KEY), retain_seconds=RETAIN)
    await keyring.load()
    [(kid, sealed)] = backend.rows("SELECT kid, sealed FROM signing_keys")
    assert kid == keyring.active.kid
    assert b"PRIVATE KEY" not in base64.b64decode(sealed)
    assert keyring.verify(keyring.sign(claims()), issuer="http://b", now=NOW).jti == "j1"


@pytest.mark.anyio
async def test_replicas_share_the_keys_and_learn_of_a_rotation(store: Store, backend: Backend) -> None:
    other_store = await backend.open()  # another replica
    try:
        first = SealedKeyring(store, Sealer(KEY), retain_seconds=RETAIN)
        second = SealedKeyring(other_store, Sealer(KEY), retain_seconds=RETAIN)
        await first.load()
        await second.load()
        assert first.jwks() == second.jwks()

        rotated = await second.add_key(now=NOW + 10)
        token = second.sign(claims())
        with pytest.raises(TokenInvalid) as unknown:
            first.verify(token, issuer="http://b", now=NOW)
        assert unknown.value.code == "unknown_key"
        await first.update()  # within REFRESH_SECONDS of the last read: nothing new yet
        assert rotated.kid not in [k.kid for k in first.keys]
        await first.update(force=True)  # what a token naming an unknown key triggers
        assert first.verify(token, issuer="http://b", now=NOW).jti == "j1"
        assert first.active.kid == rotated.kid
    finally:
        await other_store.close()


@pytest.mark.anyio
async def test_rotation_prunes_keys_retired_longer_than_tokens_live(store: Store) -> None:
    keyring = SealedKeyring(store, Sealer(KEY), retain_seconds=RETAIN)
    k1 = await keyring.add_key(now=NOW)
    k2 = await keyring.add_key(now=NOW + 10)
    k3 = await keyring.add_key(now=NOW + 20 + RETAIN)  # k1 retired at NOW + 10, longer ago than RETAIN
    assert [k.kid for k in keyring.keys] == [k3.kid, k2.kid]
    assert k1.kid not in [k.kid for k in await store.signing_keys()]


@pytest.mark.anyio
async def test_keys_sealed_with_another_key_are_refused_then_discarded_when_told(store: Store) -> None:
    await SealedKeyring(store, Sealer(KEY), retain_seconds=RETAIN).load()
    other = SealedKeyring(store, Sealer(os.urandom(32)), retain_seconds=RETAIN)
    with pytest.raises(UnreadableKeys):
        await other.load()
    lost = await other.discard_unreadable()
    assert len(lost) == 1
    await other.load()  # a fresh key, sealed with the new encryption key
    assert [k.kid for k in await store.signing_keys()] == [other.active.kid]


@pytest.mark.anyio
async def test_a_data_dirs_key_files_are_sealed_in_once(store: Store, tmp_path: Path) -> None:
    files = Keyring(tmp_path / "signing-keys", retain_seconds=RETAIN)
    files.load()
    files.rotate(now=NOW + 5)
    token = files.sign(claims())

    sealed = SealedKeyring(store, Sealer(KEY), retain_seconds=RETAIN)
    imported = await sealed.load(import_from=tmp_path / "signing-keys")
    assert sorted(imported) == sorted(k.kid for k in files.keys)
    assert sealed.verify(token, issuer="http://b", now=NOW).jti == "j1"
    assert sealed.jwks() == files.jwks()
    again = SealedKeyring(store, Sealer(KEY), retain_seconds=RETAIN)
    assert await again.load(import_from=tmp_path / "signing-keys") == []  # the database has keys now


def test_a_sqlite_broker_keeps_key_files_unless_given_an_encryption_key(tmp_path: Path) -> None:
    import asyncio

    from broker.context import open_context
    from broker.settings import Settings

    async def kids(**settings: str) -> tuple[str, list[str]]:
        ctx = await open_context(Settings(data_dir=tmp_path / "data", **settings), create=True)  # type: ignore[arg-type]
        try:
            return type(ctx.keyring).__name__, [k.kid for k in ctx.keyring.keys]
        finally:
            await ctx.database.close()

    kind, before = asyncio.run(kids())
    assert kind == "Keyring"
    assert len(list((tmp_path / "data" / "signing-keys").glob("*.json"))) == 1
    kind, after = asyncio.run(kids(encryption_key=base64.b64encode(KEY).decode()))
    assert (kind, after) == ("SealedKeyring", before)  # the file's key, sealed into the database


@pytest.mark.anyio
async def test_a_key_added_within_the_same_second_is_the_one_that_signs(store: Store) -> None:
    """Reproduction: two keys made in one second sorted by id, so a rotation could leave the
    older key signing."""
    keyring = SealedKeyring(store, Sealer(KEY), retain_seconds=RETAIN)
    for _ in range(5):
        added = await keyring.add_key(now=NOW)
        assert keyring.active.kid == added.kid
