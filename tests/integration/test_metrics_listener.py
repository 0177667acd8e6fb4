"""`pair-broker serve --metrics-address` on an address it cannot have: one error line, a hint,
exit 1, nothing listening."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import clean_env, executable

pytestmark = pytest.mark.integration


def test_a_taken_metrics_address_stops_serve_with_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        result = subprocess.run(
            [executable("pair-broker"), "serve", "--port", "0", "--data-dir", str(tmp_path / "data")],
            env=clean_env(PAIR_BROKER_METRICS_ADDRESS=address),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: Cannot listen for metrics on {address}: Address already in use.\n")
    assert "hint: Pick another --metrics-address (or PAIR_BROKER_METRICS_ADDRESS)" in result.stderr
    assert "Traceback" not in result.stderr and "listening" not in result.stdout
