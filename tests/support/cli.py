"""Running the real `pair` command tree in-process against the in-process broker, as a given
person (each with their own config dir), capturing what it prints and its exit code."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from pair.api import client
from pair.cli.app import run
from tests.support.broker import TEST_URL, InProcessBroker


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def ok(self) -> bool:
        return self.code == 0


@contextlib.contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class Person:
    """One user of the CLI: `alice.pair("spaces", "list")`."""

    def __init__(self, broker: InProcessBroker, email: str, home: Path) -> None:
        self.broker = broker
        self.email = email
        self.home = home
        self.config_dir = home / "config"
        self.cwd = home / "work"
        self.cwd.mkdir(parents=True, exist_ok=True)

    def pair(self, *args: str, input: str = "", env: dict[str, str] | None = None) -> Result:
        out, err = io.StringIO(), io.StringIO()
        code = 0
        old_cwd, old_stdin = os.getcwd(), sys.stdin
        os.chdir(self.cwd)
        sys.stdin = io.StringIO(input)
        try:
            with (
                _env({"PAIR_CONFIG_DIR": str(self.config_dir), "HOME": str(self.home), **(env or {})}),
                contextlib.redirect_stdout(out),
                contextlib.redirect_stderr(err),
            ):
                run(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            os.chdir(old_cwd)
            sys.stdin = old_stdin
        return Result(code, out.getvalue(), err.getvalue())

    def login(self) -> Result:
        key_file = self.home / "auth.key"
        key_file.write_text(self.broker.keys[self.email])
        result = self.pair("login", self.email, "--key-file", str(key_file), "--url", TEST_URL)
        assert result.ok, result.err
        return result


def connect_cli(monkeypatch: pytest.MonkeyPatch, broker: InProcessBroker) -> None:
    """Point the CLI's HTTP client at the in-process broker."""
    app = broker.http.app
    monkeypatch.setattr(client, "http_factory", lambda url: TestClient(app, base_url=url))
