"""/healthz's test write (SqliteStore.check_writable) while a request's write has failed: a
one-page commit fits where requests' writes do not, so it also needs room for PROBE_BYTES
(broker.store.failures.room_for_writes) before health says ok, and its log line says it was a
test write, not that requests' writes work again."""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from broker.store import StoreUnavailable
from broker.store.sqlite import SqliteStore


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Writes past `limit` bytes fail with EFBIG, as writes on a nearly full disk fail with ENOSPC."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def failed_write(store: SqliteStore) -> StoreUnavailable:
    failure = StoreUnavailable(store.path, "the disk is full", "Free space.")
    store.health.report(failure)  # what a request's failed INSERT does (failures.Connection)
    return failure


def test_a_test_write_without_room_keeps_health_failing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = SqliteStore(tmp_path / "broker.db")
    try:
        failed_write(store)
        with file_size_limit(256 * 1024), pytest.raises(StoreUnavailable):
            asyncio.run(store.check_writable())  # the one-page commit alone would fit
        assert store.unavailable is not None
        assert "takes writes again" not in caplog.text
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".health-probe")]
    finally:
        store.close_now()


def test_a_test_write_with_room_says_it_was_a_test(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = SqliteStore(tmp_path / "broker.db")
    try:
        failed_write(store)
        with caplog.at_level(logging.WARNING, logger="pair.broker"):
            asyncio.run(store.check_writable())
        assert store.unavailable is None
        assert "took a 1024 KiB test write (it had failed: the disk is full)" in caplog.text
        assert "takes writes again" not in caplog.text
    finally:
        store.close_now()


def test_a_requests_commit_says_writes_work_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = SqliteStore(tmp_path / "broker.db")
    try:
        failed_write(store)
        with caplog.at_level(logging.WARNING, logger="pair.broker"):
            asyncio.run(store.set_auth_key("no-such-user", "hash", 0))  # an UPDATE that commits
        assert store.unavailable is None
        assert "takes writes again (it had failed: the disk is full)" in caplog.text
    finally:
        store.close_now()
