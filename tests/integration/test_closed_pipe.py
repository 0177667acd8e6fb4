"""Output to a closed pipe (`pair spaces list | head`, the reader gone before the writer is
done) ends `pair` and `pair-broker` quietly, exit 1, as Click and gh do: decided in one place,
pair.__main__.main (and broker.__main__, which uses it), whichever path the command takes (the
fast `spaces list`, Typer's commands)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.broker import real_broker
from tests.support.people import Person
from tests.support.processes import executable

pytestmark = pytest.mark.integration


def into_closed_pipe(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first write
    try:
        return subprocess.run(argv, stdout=write, stderr=subprocess.PIPE, env=env, text=True, timeout=60, check=False)
    finally:
        os.close(write)


def test_output_to_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    with real_broker(tmp_path / "broker") as broker:
        alice = Person(broker, "alice", tmp_path, ssh_key=False)
        alice.ok("spaces", "authorize", "--name", "demo", "--no-share")
        runs = {
            "spaces list (fast path)": [executable("pair"), "spaces", "list"],
            "spaces list --json (fast path)": [executable("pair"), "spaces", "list", "--json"],
            "spaces list (Typer)": [executable("pair"), "spaces", "list", "--json", "--json"],
            "pair --help": [executable("pair"), "--help"],
            "pair-broker users list": [executable("pair-broker"), "users", "list", "--data-dir", str(broker.data_dir)],
        }
        for what, argv in runs.items():
            done = into_closed_pipe(argv, alice.env)
            assert (done.returncode, done.stderr) == (1, ""), what
