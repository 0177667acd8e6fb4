"""pair.container.facts: what a container reports about itself, read from fake cgroup/proc files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pair.container import facts

ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def affinity_count() -> float:
    if hasattr(os, "sched_getaffinity"):
        return float(len(os.sched_getaffinity(0)))
    return float(os.cpu_count() or 0)


@pytest.mark.parametrize(
    ("env", "platform"),
    [
        ({"CODESPACES": "true"}, "codespaces"),
        ({"CODESPACE_NAME": "literate-space-fiesta"}, "codespaces"),
        # A Codespace is also a dev container: Codespaces wins.
        ({"CODESPACES": "true", "REMOTE_CONTAINERS": "true"}, "codespaces"),
        ({"DEVWORKSPACE_ID": "workspace1a2b3c"}, "devfile"),
        ({"CHE_WORKSPACE_ID": "workspace1a2b3c"}, "devfile"),
        ({"REMOTE_CONTAINERS": "true"}, "devcontainer"),
        ({}, "generic"),
        ({"CODESPACES": "false"}, "generic"),
        ({"HOME": "/root", "PATH": "/usr/bin"}, "generic"),
    ],
)
def test_detect_platform(env: dict[str, str], platform: str) -> None:
    assert facts.detect_platform(env) == platform


def test_cpu_count_from_a_cgroup_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert facts.cpu_count(tmp_path) == 1.5


def test_cpu_count_rounds_to_two_decimals(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("100000 300000\n")
    assert facts.cpu_count(tmp_path) == 0.33


@pytest.mark.parametrize("content", ["max 100000\n", "garbage\n", ""])
def test_cpu_count_without_a_quota_is_the_affinity_count(tmp_path: Path, content: str) -> None:
    (tmp_path / "cpu.max").write_text(content)
    assert facts.cpu_count(tmp_path) == affinity_count()


def test_cpu_count_without_cgroup_files_is_the_affinity_count(tmp_path: Path) -> None:
    assert facts.cpu_count(tmp_path / "missing") == affinity_count()
    assert affinity_count() >= 1


def test_memory_from_the_cgroup_limit(tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text("536870912\n")
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16384 kB\n")
    assert facts.memory_bytes(tmp_path, meminfo) == 536870912


def test_memory_without_a_limit_is_memtotal(tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text("max\n")
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemFree:         1024 kB\nMemTotal:       16384 kB\nMemAvailable:    2048 kB\n")
    assert facts.memory_bytes(tmp_path, meminfo) == 16384 * 1024


def test_memory_without_any_file_is_zero(tmp_path: Path) -> None:
    assert facts.memory_bytes(tmp_path / "no-cgroup", tmp_path / "no-meminfo") == 0


def test_host_keys_drop_the_comment(tmp_path: Path) -> None:
    pub = tmp_path / "ssh_host_ed25519_key.pub"
    pub.write_text(f"{ED25519} root@buildkitsandbox\n")
    assert facts.host_keys(pub) == [ED25519]


def test_host_keys_without_a_comment(tmp_path: Path) -> None:
    pub = tmp_path / "ssh_host_ed25519_key.pub"
    pub.write_text(ED25519)
    assert facts.host_keys(pub) == [ED25519]


def test_host_keys_missing_or_empty_file(tmp_path: Path) -> None:
    assert facts.host_keys(tmp_path / "missing.pub") == []
    empty = tmp_path / "empty.pub"
    empty.write_text("\n")
    assert facts.host_keys(empty) == []


def test_login_user_prefers_the_configured_user() -> None:
    assert facts.login_user({"PAIR_SSH_USER": "vscode"}) == "vscode"


def test_collect_reports_platform_and_host_key(tmp_path: Path) -> None:
    pub = tmp_path / "host.pub"
    pub.write_text(f"{ED25519} host\n")
    reported = facts.collect(pub, {"DEVWORKSPACE_ID": "w1", "PAIR_SSH_USER": "user"})
    assert reported.platform == "devfile"
    assert reported.host_keys == [ED25519]
    assert reported.login_user == "user"
    assert reported.cpus > 0
    assert reported.pair_version
