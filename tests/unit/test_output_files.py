"""pair.files.check_new_file / write_new_file: the one rule for a secret written to a path a
person names (authorize --output, pair-broker users add/reset-key --key-file)."""

from __future__ import annotations

import os
import socket
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pair.api.errors import PairError
from pair.files import check_new_file, write_new_file


def _socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))


def _device(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a /dev/null twin


def _link_to_a_file(path: Path) -> None:
    path.with_name("target").write_text("old\n")
    path.symlink_to("target")


MAKERS: dict[str, Callable[[Path], object]] = {
    "missing": lambda p: None,
    "regular": lambda p: p.write_text("old\n"),
    "directory": lambda p: p.mkdir(),
    "fifo": lambda p: os.mkfifo(p),
    "socket": _socket,
    "link to a file": _link_to_a_file,
    "link to nothing": lambda p: p.symlink_to("nowhere"),
    "link to /dev/null": lambda p: p.symlink_to("/dev/null"),
}
if os.geteuid() == 0:
    MAKERS["device"] = _device


def _snapshot(directory: Path) -> dict[str, tuple[int, str]]:
    return {p.name: (p.lstat().st_mode, os.readlink(p) if p.is_symlink() else "") for p in sorted(directory.iterdir())}


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(sorted(MAKERS)), replace=st.booleans(), name=st.sampled_from(["k.txt", "-", ".k", "a b"]))
def test_only_a_new_or_replaceable_regular_file_is_written(kind: str, replace: bool, name: str) -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as raw:
        directory = Path(raw)
        path = directory / name
        MAKERS[kind](path)
        before = _snapshot(directory)
        accepted = kind == "missing" or (kind == "regular" and replace)
        if not accepted:
            with pytest.raises(PairError) as refused:
                check_new_file(path, replace=replace, what="the token", hint="HINT")
            assert refused.value.hint == "HINT"
            assert "\n" not in refused.value.message
            assert _snapshot(directory) == before  # nothing made, nothing replaced, no temp file
            return
        check_new_file(path, replace=replace, what="the token", hint="HINT")
        write_new_file(path, "secret\n", what="the token", hint="HINT")
        st_ = path.lstat()
        assert stat.S_ISREG(st_.st_mode) and stat.S_IMODE(st_.st_mode) == 0o600
        assert path.read_text() == "secret\n"
        assert sorted(p.name for p in directory.iterdir()) == sorted({*before, name})  # no temp file left


def test_dash_is_standard_output_for_every_output(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    check_new_file(Path("-"), replace=False, what="the token", hint="")
    write_new_file(Path("-"), "secret\n", what="the token", hint="")
    assert capsys.readouterr().out == "secret\n"
    assert list(tmp_path.iterdir()) == []


def test_a_failed_rename_leaves_no_temp_file_and_is_one_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(src: object, dst: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PairError, match=r"Cannot write the token to .*: Operation not permitted\.") as failed:
        write_new_file(tmp_path / "t.txt", "secret\n", what="the token", hint="AGAIN")
    assert failed.value.hint == "AGAIN"
    assert list(tmp_path.iterdir()) == []
