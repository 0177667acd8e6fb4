"""One `pair-broker serve` per data directory (issue 17, kind 3), with real processes."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request
from pathlib import Path

from tests.support.broker import real_broker
from tests.support.processes import clean_env, executable


def serve(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [executable("pair-broker"), "serve", "--port", "0", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_a_second_serve_on_the_same_data_dir_exits_at_once_naming_the_first(tmp_path: Path) -> None:
    """Reproduction: a second broker on one data directory started without a word."""
    data = tmp_path / "data"
    with real_broker(data) as first:
        files_before = sorted(p.name for p in data.iterdir())
        second = serve(data)
        assert second.returncode == 1
        assert second.stdout == ""
        assert second.stderr == (
            f"error: Another pair-broker is already serving {data} (pid {first.proc.pid}, at {first.url}).\n"
            f"hint: One broker process per data directory: use that one, stop it first (kill {first.proc.pid}), "
            "or give this one its own --data-dir. Admin commands (pair-broker users …) work next to it.\n"
        )
        assert sorted(p.name for p in data.iterdir()) == files_before
        with urllib.request.urlopen(f"{first.url}/healthz", timeout=10) as answer:
            assert answer.status == 200  # the first one never noticed
    assert first.proc.returncode == 0


def test_admin_commands_work_next_to_a_running_broker(tmp_path: Path) -> None:
    with real_broker(tmp_path / "data") as broker:
        added = broker.admin("users", "add", "bob@example.com", "--key-file", str(tmp_path / "bob.key"))
        assert added.returncode == 0, added.stderr
        listed = broker.admin("users", "list")
        assert "bob@example.com" in listed.stdout
        assert broker.admin("keys", "rotate").returncode == 0
        assert json.loads(broker.admin("audit", "--json").stdout)


def test_a_killed_broker_leaves_nothing_that_blocks_the_next(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with real_broker(data) as first:
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        assert json.loads((data / "serve.lock").read_text())["pid"] == first.proc.pid  # stale, and harmless
        with real_broker(data) as second:
            assert second.proc.poll() is None
            assert json.loads((data / "serve.lock").read_text()) == {"pid": second.proc.pid, "url": second.url}
