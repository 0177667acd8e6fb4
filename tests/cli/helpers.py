"""Helpers shared by the CLI tests: error-shape checks, the saved session, an API client as a
given person, Space tokens decoded without a JWT library, and real SSH keys from ssh-keygen."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from broker.cli import main as broker_main
from pair.api.client import Client
from tests.support.broker import InProcessBroker
from tests.support.cli import Person, Result
from tests.support.tools import need_tool


def _link_to_a_file(path: Path) -> None:
    path.with_name("real.txt").write_text("mine\n")
    path.symlink_to("real.txt")


# What an --output path a person names may be besides a new regular file, how to make it there,
# and what pair.files.check_new_file says of it.
NOT_A_REGULAR_FILE: dict[str, tuple[Callable[[Path], object], str]] = {
    "fifo": (os.mkfifo, "exists and is not a regular file"),
    "link": (_link_to_a_file, "symbolic link"),
    "link to /dev/null": (lambda p: p.symlink_to("/dev/null"), "symbolic link"),
}
if os.geteuid() == 0:  # as root, writing there once turned a device node into a 0600 file holding the secret
    NOT_A_REGULAR_FILE["device"] = (
        lambda p: os.mknod(p, stat.S_IFCHR | 0o666, os.makedev(1, 3)),
        "exists and is not a regular file",
    )

LIST_HEADER = ["id", "name", "role", "state", "created_at", "cpu", "memory", "disk", "net", "llm_tokens", "template"]
READY = re.compile(r'You\'re ready to bootstrap your Space "([a-z0-9][a-z0-9_-]*)"\.')


def assert_error(result: Result, *fragments: str, hint: str | None = None) -> tuple[str, str]:
    """The one error shape: non-zero exit, `error: …` then optionally `hint: …` on stderr, nothing
    else there, nothing on stdout, never a traceback. Returns (message, hint)."""
    assert result.code != 0, result
    assert "Traceback" not in result.err, result.err
    assert result.out == "", result
    lines = result.err.splitlines()
    assert lines, result
    assert lines[0].startswith("error: "), result.err
    assert len(lines) <= 2, result.err
    message = lines[0].removeprefix("error: ")
    got_hint = ""
    if len(lines) == 2:
        assert lines[1].startswith("hint: "), result.err
        got_hint = lines[1].removeprefix("hint: ")
    for fragment in fragments:
        assert fragment in message, (fragment, result.err)
    if hint is not None:
        assert hint in got_hint, (hint, result.err)
    return message, got_hint


def admin(broker: InProcessBroker, *args: str) -> Result:
    """`pair-broker ARGS --data-dir …` in this process, next to the serving app (another
    connection to its database, as an operator's shell would be)."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            broker_main([*args, "--data-dir", str(broker.ctx.settings.data_dir)])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return Result(code, out.getvalue(), err.getvalue())


def ok(result: Result) -> str:
    assert result.ok, result.err
    return result.out


def session_file(person: Person) -> Path:
    return person.config_dir / "session.json"


def session_token(person: Person) -> str:
    token = json.loads(session_file(person).read_text())["token"]
    assert isinstance(token, str)
    return token


def me_status(broker: InProcessBroker, token: str) -> int:
    """What the broker answers GET /api/v1/me with this session token."""
    status: int = broker.http.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code
    return status


def client_as(broker: InProcessBroker, person: Person) -> Client:
    """The API client with `person`'s saved session."""
    return Client(broker.url, token=session_token(person), http=TestClient(broker.http.app, base_url=broker.url))


def authorize(person: Person, *args: str) -> tuple[str, str]:
    """`pair spaces authorize ARGS` that must succeed; returns (space name, token)."""
    result = person.pair("spaces", "authorize", *args)
    assert result.ok, result.err
    match = READY.match(result.out.splitlines()[0])
    assert match, result.out
    output = next((args[i + 1] for i, a in enumerate(args) if a in ("--output", "-o")), "SPACE_ID.txt")
    token = (person.cwd / output).read_text().strip()
    return match.group(1), token


def list_json(person: Person) -> list[dict[str, Any]]:
    result = person.pair("spaces", "list", "--json")
    assert result.ok, result.err
    rows = json.loads(result.out)
    assert isinstance(rows, list)
    return rows


def space_ids(person: Person) -> set[str]:
    return {row["id"] for row in list_json(person)}


def space_id(person: Person, name: str) -> str:
    ids = [row["id"] for row in list_json(person) if row["name"] == name]
    assert len(ids) == 1, (name, ids)
    return str(ids[0])


def b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def jwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A JWT's header and payload, unverified."""
    parts = token.split(".")
    assert len(parts) == 3, token
    header, payload = json.loads(b64url(parts[0])), json.loads(b64url(parts[1]))
    assert isinstance(header, dict) and isinstance(payload, dict)
    return header, payload


def ssh_keygen(path: Path, kind: str = "ed25519", bits: int | None = None, comment: str = "me@laptop") -> Path:
    """A real key pair from ssh-keygen; returns the .pub path."""
    tool = need_tool("ssh-keygen")
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [tool, "-q", "-t", kind, "-N", "", "-C", comment, "-f", str(path)]
    if bits:
        cmd += ["-b", str(bits)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    return path.with_name(path.name + ".pub")


def ssh_keygen_l(pub: Path) -> str:
    """The line `ssh-keygen -l -f PUB` prints."""
    out = subprocess.run(
        [need_tool("ssh-keygen"), "-l", "-f", str(pub)], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    return out.strip()
