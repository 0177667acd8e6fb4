"""The real `pair-broker` on a data dir that is read-only or on a full disk. As root the data dir
is a read-only bind mount or a small tmpfs in a private mount namespace (`unshare -m`); nothing
outside the test's directory is touched.

Start-up refuses with one sentence and a hint; at run time writes get 503 with the JSON error
body, /healthz says so, the log gets a line a minute rather than a traceback a request, and all
of it heals by itself once there is room again."""

from __future__ import annotations

import asyncio
import shlex
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from broker import accounts
from broker.context import open_context
from broker.settings import Settings
from tests.support.processes import Output, clean_env, executable, stop
from tests.support.tools import need_root, need_tool

pytestmark = pytest.mark.integration


def make_data_dir(directory: Path) -> str:
    """A data dir as `serve` leaves it (database, signing key, admin); returns the admin's key."""

    async def setup() -> str:
        ctx = await open_context(Settings(data_dir=directory), create=True)
        _, key = await accounts.create_user(ctx, "admin@example.com", is_admin=True)
        await ctx.database.close()
        return key

    return asyncio.run(setup())


def in_namespace(setup: str, *argv: str) -> list[str]:
    """argv that runs `setup` (mount commands) in a private mount namespace, then execs argv."""
    need_root()
    need_tool("unshare")
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", f"{setup} && exec {shlex.join(argv)}"]


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, env=clean_env(), timeout=60, check=False)


def one_error(result: subprocess.CompletedProcess[str], message: str, hint: str) -> None:
    assert result.returncode == 1, result
    assert result.stderr.splitlines() == [f"error: {message}", f"hint: {hint}"], result.stderr


def broker(*args: str) -> list[str]:
    return [executable("pair-broker"), *args]


def read_only(directory: Path) -> str:
    return f"mount --bind {directory} {directory} && mount -o remount,bind,ro {directory}"


# -- a read-only data dir -------------------------------------------------------------------


@pytest.mark.parametrize(
    "verb",
    [
        ("serve", "--port", "0"),
        ("users", "add", "bob@example.com"),
        ("users", "reset-key", "admin@example.com"),
        ("keys", "rotate"),
        ("users", "list"),
        ("audit",),
    ],
    ids=lambda v: " ".join(v[:2]),
)
def test_a_read_only_data_dir_is_one_error_line(tmp_path: Path, verb: tuple[str, ...]) -> None:
    data = tmp_path / "data"
    make_data_dir(data)
    before = sorted(p.name for p in data.rglob("*"))
    result = run(in_namespace(read_only(data), *broker(*verb, "--data-dir", str(data))))
    if verb[0] == "serve":  # its lock file is the first thing it writes
        one_error(
            result,
            f"Cannot write to {data}: Read-only file system.",
            f"Make {data} writable by the broker's user (root), or pass another --data-dir.",
        )
    else:
        one_error(
            result,
            f"Cannot use the database {data}/broker.db: its directory is read-only.",
            f"Make {data} and its files writable by the broker's user, or pass another --data-dir.",
        )
    assert sorted(p.name for p in data.rglob("*")) == before


def test_keys_rotate_on_a_read_only_keys_dir_is_one_error_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_data_dir(data)
    keys = data / "signing-keys"
    before = sorted(keys.iterdir())
    result = run(in_namespace(read_only(keys), *broker("keys", "rotate", "--data-dir", str(data))))
    one_error(
        result,
        f"Cannot write to {keys}: Read-only file system.",
        f"Make {keys} writable by the broker's user (root), or pass another --data-dir.",
    )
    assert sorted(keys.iterdir()) == before


def test_a_key_file_in_a_read_only_directory_creates_no_user(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    make_data_dir(data)
    out.mkdir()
    add = broker("users", "add", "bob@example.com", "--key-file", str(out / "bob.key"), "--data-dir", str(data))
    one_error(
        run(in_namespace(read_only(out), *add)),
        f"Cannot write to the directory {out}: Read-only file system.",
        "Pass --key-file a new file in a directory you can write.",
    )
    listed = run(broker("users", "list", "--data-dir", str(data)))
    assert "bob@example.com" not in listed.stdout
    assert run(add).returncode == 0  # a re-run where it can write works: nothing was half-made


def test_pair_agent_on_a_read_only_pair_home_is_one_error_line(tmp_path: Path) -> None:
    home = tmp_path / "pair-home"
    home.mkdir()
    result = run(in_namespace(read_only(home), "env", f"PAIR_HOME={home}", executable("pair"), "agent"))
    one_error(
        result,
        f"PAIR_HOME {home} is not writable by this user (uid 0).",
        "Run the agent as the user that installed pair (supervisord does), or fix the directory's owner.",
    )


# -- a full disk ----------------------------------------------------------------------------


def tmpfs(directory: Path, size: str) -> str:
    return f"mount -t tmpfs -o size={size},mode=700 tmpfs {directory}"


def fill(directory: Path) -> None:
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={directory}/filler", "bs=64k"], capture_output=True, timeout=60, check=False
    )


def test_a_key_file_on_a_full_disk_creates_no_user(tmp_path: Path) -> None:
    """The checks pass (the directory takes a new, empty file); the write itself fails: the key is
    staged inside the database transaction, so the user is rolled back with it."""
    data, out = tmp_path / "data", tmp_path / "out"
    make_data_dir(data)
    out.mkdir()
    setup = f"{tmpfs(out, '64k')} && (dd if=/dev/zero of={out}/filler bs=4k 2>/dev/null || true)"
    add = broker("users", "add", "bob@example.com", "--key-file", str(out / "bob.key"), "--data-dir", str(data))
    one_error(
        run(in_namespace(setup, *add)),
        f"Cannot write {out / 'bob.key'}: No space left on device; nothing was changed.",
        "Pass --key-file a new file in a directory you can write.",
    )
    assert "bob@example.com" not in run(broker("users", "list", "--data-dir", str(data))).stdout


@pytest.mark.parametrize("fresh", [True, False], ids=["first-start", "existing-data"])
def test_serve_on_a_full_disk_refuses_to_start(tmp_path: Path, fresh: bool) -> None:
    data, seed = tmp_path / "data", tmp_path / "seed"
    data.mkdir()
    copy = "true"
    if not fresh:
        make_data_dir(seed)
        copy = f"cp -a {seed}/. {data}/"
    setup = f"{tmpfs(data, '2m')} && {copy} && (dd if=/dev/zero of={data}/filler bs=4k 2>/dev/null || true)"
    result = run(in_namespace(setup, *broker("serve", "--port", "0", "--data-dir", str(data))))
    assert result.returncode == 1, result
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: Cannot "), result.stderr
    assert "the disk is full" in lines[0] or "No space left on device" in lines[0], result.stderr
    assert lines[1] == f"hint: Free space on the disk that holds {data}.", result.stderr
    assert "listening" not in result.stdout


@contextmanager
def broker_on_tmpfs(data: Path, size: str) -> Iterator[tuple[str, Path, Output]]:
    """`pair-broker serve` on a fresh tmpfs of `size` in its own mount namespace: its URL, the
    data dir as seen from here (through /proc/PID/root), and its output."""
    data.mkdir()
    proc = subprocess.Popen(
        in_namespace(tmpfs(data, size), *broker("serve", "--port", "0", "--data-dir", str(data))),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=clean_env(),
    )
    output = Output(proc)
    try:
        url = output.wait_for(r"listening on (http://\S+)").group(1)
        # unshare and sh exec'ed: proc.pid is the broker, and /proc/PID/root sees its mounts.
        yield url, Path(f"/proc/{proc.pid}/root") / data.relative_to("/"), output
    finally:
        stop(proc)
        output.finish()
        assert proc.stdout is not None
        proc.stdout.close()


def test_writes_on_a_full_disk_get_503_and_the_broker_heals(tmp_path: Path) -> None:
    with broker_on_tmpfs(tmp_path / "data", "4m") as (url, data, output), httpx.Client(base_url=url) as http:
        key = (data / "admin.key").read_text().strip()
        login = {"email": "admin@example.com", "auth_key": key}
        assert http.post("/api/v1/login", json=login).status_code == 200
        fill(data)
        statuses = []
        for _ in range(500):  # each sign-in writes a session and an audit row: the WAL must grow
            response = http.post("/api/v1/login", json=login)
            statuses.append(response.status_code)
            if response.status_code != 200:
                break
        assert statuses[-1] == 503, statuses
        assert set(statuses[:-1]) <= {200}
        assert response.headers["content-type"] == "application/json"
        assert response.headers["retry-after"] == "30"
        assert response.json() == {
            "message": "The broker cannot use its database right now: the disk is full.",
            "detail": "Try again later; the broker's operator can see why in its log.",
            "code": "storage_unavailable",
        }
        for _ in range(20):  # failing writes and checkpoints keep coming: the log stays short
            http.post("/api/v1/login", json=login)
        health = http.get("/healthz")
        assert (health.status_code, health.json()["code"]) == (503, "storage_unavailable")

        (data / "filler").unlink()  # the operator frees space: no restart needed
        assert http.get("/healthz").status_code == 200
        assert http.post("/api/v1/login", json=login).status_code == 200
        output.wait_for(r"took a 1024 KiB test write \(it had failed: the disk is full\)")
    log = output.text()
    assert log.count("cannot use the database") == 1, log
    assert f"cannot use the database {tmp_path / 'data'}/broker.db: the disk is full;" in log
    assert "Traceback" not in log and "500" not in log
