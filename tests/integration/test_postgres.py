"""The broker on a real PostgreSQL server (tests/support/postgres.py): a real `pair-broker serve`
and the real `pair` through the core journey, `pair-broker migrate`, moving a SQLite broker's
data (and its signing keys) into PostgreSQL, and a replica started before its PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from broker import accounts
from broker.context import open_context
from broker.sealed_keys import REFRESH_SECONDS
from broker.settings import Settings
from pair.api.models import SpaceTokenClaims
from pair.api.tokens import AUDIENCE
from tests.support.broker import RealBroker, real_broker
from tests.support.container import free_port
from tests.support.people import Person
from tests.support.postgres import PostgresServer, postgres_server
from tests.support.processes import Output, clean_env, executable, stop

pytestmark = pytest.mark.integration

KEY = base64.b64encode(bytes(range(32))).decode()  # the encryption key every "replica" gets
OTHER_KEY = base64.b64encode(bytes(range(1, 33))).decode()


@pytest.fixture
def database(postgres: PostgresServer) -> Iterator[str]:
    url = postgres.create_database(migrated=False)  # as an operator's `createdb` leaves it
    yield url
    postgres.drop_database(url)


def broker_cmd(*args: str, key: str | None = KEY, **env: str) -> subprocess.CompletedProcess[str]:
    extra = {"PAIR_BROKER_ENCRYPTION_KEY": key} if key else {}
    return subprocess.run(
        [executable("pair-broker"), *args],
        capture_output=True,
        text=True,
        env=clean_env(**extra, **env),
        timeout=120,
        check=False,
    )


def refused(result: subprocess.CompletedProcess[str], *phrases: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    assert "\nhint: " in result.stderr
    for phrase in phrases:
        assert phrase in result.stderr


def test_the_core_journey_on_postgresql(database: str, postgres: PostgresServer, tmp_path: Path) -> None:
    with real_broker(tmp_path / "replica-1", database=database, env={"PAIR_BROKER_ENCRYPTION_KEY": KEY}) as broker:
        assert "database postgresql://postgres@127.0.0.1:" in broker.output.text()
        alice = Person(broker, "alice", tmp_path, ssh_key=False)  # `pair-broker users add --database …`
        bob = Person(broker, "bob", tmp_path, ssh_key=False)
        alice.ok("spaces", "authorize", "--user", bob.email, "--name", "demo")
        token = (alice.dir / "SPACE_ID.txt").read_text().strip()
        done = alice.pair("spaces", "bootstrap", token, env={"PAIR_HOME": str(tmp_path / "container")})
        assert done.returncode == 0, done.stderr

        [mine] = alice.spaces()
        assert (mine["name"], mine["role"], mine["state"]) == ("demo", "owner", "starting")
        assert [(s["name"], s["role"]) for s in bob.spaces()] == [("demo", "shared")]
        listed = broker.admin("users", "list")
        assert listed.returncode == 0, listed.stderr
        assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == [
            "admin@example.com",
            "alice@example.com",
            "bob@example.com",
        ]

    # Everything is in the database, the signing key sealed: a dump reveals no private key.
    assert postgres.rows(database, "SELECT COUNT(*) FROM spaces WHERE name = 'demo'") == [(1,)]
    [(kid, sealed)] = postgres.rows(database, "SELECT kid, sealed FROM signing_keys")
    assert "PRIVATE KEY" not in base64.b64decode(sealed).decode("latin-1")
    assert not any((tmp_path / "replica-1" / "signing-keys").glob("*.json"))
    # Another replica with the same key and its own data dir signs and verifies with the same key.
    listed = broker_cmd("keys", "list", "--database", database, "--data-dir", str(tmp_path / "replica-2"))
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split()[0] == kid


def test_serving_postgresql_without_an_encryption_key_is_refused(database: str, tmp_path: Path) -> None:
    result = broker_cmd("serve", "--port", "0", "--data-dir", str(tmp_path / "data"), "--database", database, key=None)
    refused(result, "encryption key", "openssl rand -base64 32")


def test_a_broker_with_another_encryption_key_is_refused_until_told_to_discard(database: str, tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    first = broker_cmd("keys", "rotate", "--database", database, "--data-dir", data)
    assert first.returncode == 0, first.stderr
    wrong = broker_cmd("keys", "list", "--database", database, "--data-dir", data, key=OTHER_KEY)
    refused(wrong, "do not open with this encryption key", "--discard-unreadable")
    fresh = broker_cmd(
        "keys", "rotate", "--discard-unreadable", "--database", database, "--data-dir", data, key=OTHER_KEY
    )
    assert fresh.returncode == 0, fresh.stderr
    lost = first.stdout.split()[3].rstrip(";")
    now = broker_cmd("keys", "list", "--database", database, "--data-dir", data, key=OTHER_KEY)
    assert now.returncode == 0, now.stderr
    assert lost not in now.stdout
    assert fresh.stdout.split()[3].rstrip(";") == now.stdout.split()[0]  # the new key signs


def test_discarding_makes_one_key_and_a_replica_with_the_old_encryption_key_answers_503(
    database: str, tmp_path: Path
) -> None:
    """`keys rotate --discard-unreadable` with another encryption key while a replica runs with
    the first: the rotate makes one key (as the docs say); the replica says so in one log line,
    answers what needs the keys (the JWKS, /healthz) 503 with a clear message and code, and
    never a traceback."""
    with real_broker(tmp_path / "replica", database=database, env={"PAIR_BROKER_ENCRYPTION_KEY": KEY}) as broker:
        fresh = broker_cmd(
            "keys",
            "rotate",
            "--discard-unreadable",
            "--database",
            database,
            "--data-dir",
            str(tmp_path / "other"),
            key=OTHER_KEY,
        )
        assert fresh.returncode == 0, fresh.stderr
        assert fresh.stdout.strip().endswith("; 1 key(s) published in the JWKS."), fresh.stdout
        with httpx.Client(base_url=broker.url, timeout=10) as client:
            # Until the keyring's refresh reads the table again (every REFRESH_SECONDS; longer
            # under load): nothing else tells when that happens but the answer itself.
            deadline = time.monotonic() + 20 * REFRESH_SECONDS
            while (jwks := client.get("/.well-known/jwks.json")).status_code != 503 and time.monotonic() < deadline:
                time.sleep(REFRESH_SECONDS / 4)
            for answer in (jwks, client.get("/healthz"), client.get("/.well-known/jwks.json")):
                assert answer.status_code == 503, answer.text
                body = answer.json()
                assert body["code"] == "unavailable"
                assert "cannot open the token signing keys" in body["message"]
        said = broker.output.text()
        assert said.count("do not open with this replica's encryption key") == 1, said
        assert "Traceback" not in said


def test_migrate_applies_the_migrations_once_and_says_so(database: str, tmp_path: Path) -> None:
    first = broker_cmd("migrate", "--database", database, key=None)  # schema only: no key needed
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("Applied ")
    assert "0001_initial.postgresql.sql" in first.stdout
    assert "PASSWORD" not in first.stdout
    again = broker_cmd("migrate", "--database", database, key=None)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().endswith("is up to date.")


def test_a_database_from_a_newer_release_is_refused_with_what_to_run(
    database: str, postgres: PostgresServer, tmp_path: Path
) -> None:
    """An older replica against a schema a newer release migrated (a rolling upgrade that ran
    `migrate` first): refused, saying to run the newer release or restore the database."""
    assert broker_cmd("migrate", "--database", database, key=None).returncode == 0
    postgres.execute(
        database, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, '9999_future.sql', 0)"
    )
    for args in (("users", "list"), ("serve", "--port", "0", "--data-dir", str(tmp_path / "data"))):
        result = broker_cmd(*args, "--database", database)
        refused(result, "schema version 9999, newer than this broker knows", "run that release", "restore")


def test_migrate_on_a_data_dir_without_a_database_is_refused(tmp_path: Path) -> None:
    refused(broker_cmd("migrate", "--data-dir", str(tmp_path / "nothing"), key=None), "No broker database")


def test_an_admin_verb_given_a_replicas_data_dir_is_told_of_database(tmp_path: Path) -> None:
    """A PostgreSQL replica's data dir holds no database: the hint names --database."""
    (tmp_path / "replica").mkdir()
    result = broker_cmd("users", "add", "carol@example.com", "--data-dir", str(tmp_path / "replica"), key=None)
    refused(result, "No broker database in", "--database", "PAIR_BROKER_DATABASE_URL")


def test_a_database_url_that_names_no_backend_is_refused(tmp_path: Path) -> None:
    result = broker_cmd("users", "list", "--database", "mysql://pair:s3cret@db/pair", key=None)
    refused(result, "--database is not a usable database URL")
    assert "s3cret" not in result.stderr


def _sqlite_broker(data_dir: Path) -> tuple[str, str]:
    """A SQLite broker's data dir as `serve` leaves it, with a user and a Space token; the token
    (signed by the key file in DATA_DIR/signing-keys) and the key's id."""

    async def setup() -> tuple[str, str]:
        ctx = await open_context(Settings(data_dir=data_dir), create=True)
        try:
            await accounts.create_user(ctx, "alice@example.com", is_admin=True)
            await accounts.create_user(ctx, "bob@example.com")
            claims = SpaceTokenClaims(iss="http://x", aud=AUDIENCE, sub="sp_1", iat=1, nbf=1, exp=2, jti="j")
            return ctx.keyring.sign(claims), ctx.keyring.active.kid
        finally:
            await ctx.database.close()

    return asyncio.run(setup())


def test_moving_a_sqlite_broker_to_postgresql(database: str, tmp_path: Path) -> None:
    data = tmp_path / "sqlite-broker"
    _, kid = _sqlite_broker(data)
    source = f"sqlite://{data / 'broker.db'}"

    refused(broker_cmd("migrate", "--from", source, "--to", database, key=None), "encryption key")
    moved = broker_cmd("migrate", "--from", source, "--to", database)
    assert moved.returncode == 0, moved.stderr
    lines = [line for line in moved.stdout.splitlines() if line.endswith(" rows")]
    counts = dict(line.split()[:2] for line in lines)
    assert len({len(line) for line in lines}) == 1, lines  # one column of counts, space_group_shares too
    assert "space_group_shares" in counts
    assert counts["users"] == "2"
    assert int(counts["audit_log"]) >= 2
    assert "Sealed 1 signing key(s)" in moved.stdout
    assert "every table's row count matches" in moved.stdout

    # The PostgreSQL broker has the users and the SQLite broker's signing key (sealed).
    listed = broker_cmd("users", "list", "--database", database, "--data-dir", str(tmp_path / "replica"))
    assert listed.returncode == 0, listed.stderr
    assert "alice@example.com" in listed.stdout and "bob@example.com" in listed.stdout
    keys = broker_cmd("keys", "list", "--database", database, "--data-dir", str(tmp_path / "replica"))
    assert keys.stdout.split()[0] == kid

    # A target that holds data is refused, and nothing changes; --replace copies afresh.
    again = broker_cmd("migrate", "--from", source, "--to", database)
    refused(again, "already holds data", "users: 2", "--replace")
    replaced = broker_cmd("migrate", "--from", source, "--to", database, "--replace")
    assert replaced.returncode == 0, replaced.stderr
    assert "Emptied " in replaced.stdout


def test_moving_from_a_file_that_is_not_there_is_refused(database: str, tmp_path: Path) -> None:
    result = broker_cmd("migrate", "--from", f"sqlite://{tmp_path / 'missing.db'}", "--to", database)
    refused(result, "There is no SQLite database at")
    assert not (tmp_path / "missing.db").exists()


def test_a_second_replica_serves_the_same_data(database: str, tmp_path: Path) -> None:
    env = {"PAIR_BROKER_ENCRYPTION_KEY": KEY}
    with real_broker(tmp_path / "replica-1", database=database, env=env) as first:
        alice = Person(first, "alice", tmp_path, ssh_key=False)
        alice.ok("spaces", "authorize", "--name", "demo", "--no-share")
    with real_broker(tmp_path / "replica-2", database=database, env=env, fresh=False) as second:
        second_replica: RealBroker = second
        assert "first admin" not in second_replica.output.text()  # the database has one already
        alice.ok("login", alice.email, "--key-file", str(alice.key_file), "--url", second_replica.url)
        assert [s["name"] for s in alice.spaces()] == ["demo"]


def test_serve_waits_for_a_postgresql_that_starts_late(tmp_path: Path) -> None:
    """A replica started while PostgreSQL is down says so in one line, listens on nothing
    meanwhile (a load balancer skips it), and serves once PostgreSQL is up; an admin verb run
    meanwhile fails at once instead. A server of this test's own, stopped and started."""
    with postgres_server() as own:
        database = own.create_database(migrated=False)
        own.stop_making()
        own.stop()
        port = free_port()
        data = str(tmp_path / "replica")
        proc = subprocess.Popen(
            [executable("pair-broker"), "serve", "--port", str(port), "--data-dir", data, "--database", database],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=clean_env(PAIR_BROKER_ENCRYPTION_KEY=KEY),
        )
        output = Output(proc)
        try:
            output.wait_for(
                rf"^waiting for PostgreSQL at 127\.0\.0\.1:{own.port}: the broker cannot connect to the database"
                r" server \(.*Connection refused.*\); retrying in 1 s$"
            )
            with pytest.raises(httpx.ConnectError):  # refused: nothing listens yet
                httpx.get(f"http://127.0.0.1:{port}/healthz")
            admin = broker_cmd("users", "list", "--database", database, "--data-dir", str(tmp_path / "admin"))
            refused(admin, "cannot connect to the database server", "Connection refused")
            assert proc.poll() is None

            own.start()
            output.wait_for(rf"^PostgreSQL at 127\.0\.0\.1:{own.port} answers; starting\.$")
            output.wait_for(r"first admin, admin@example\.com")
            url = output.wait_for(r"listening on (http://\S+)").group(1)
            assert httpx.get(f"{url}/healthz").status_code == 200
        finally:
            stop(proc)
            output.finish()
            assert proc.stdout is not None
            proc.stdout.close()
        said = output.text()
        assert said.count("waiting for PostgreSQL") == 1, said  # the same reason is said once (a minute apart)
        assert "Traceback" not in said
