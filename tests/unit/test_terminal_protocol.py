"""The terminal wire protocol (pair.api.terminal) and where a terminal's shell starts."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import msgspec
import pytest

from pair.api import models as m
from pair.api import terminal as tp
from pair.api.fields import check_facts
from pair.api.grammar import Invalid
from pair.container.facts import reported_folder, workspace_folder
from pair.container.terminals import new_terminal_id, utf8_locale


def test_messages_are_tagged_json_objects_that_round_trip() -> None:
    when = datetime(2026, 11, 30, tzinfo=timezone.utc)
    hello = tp.Hello(
        terminal_id="term_abcdefghijkl",
        email="b@x.io",
        role="viewer",
        started_by="a@x.io",
        started_at=when,
        cols=80,
        rows=24,
    )
    assert json.loads(tp.encode(hello))["type"] == "hello"
    for message in (
        hello,
        tp.Attached(people=[tp.Person(email="a@x.io", role="driver", since=when)]),
        tp.RoleChanged(role="driver"),
        tp.SizeChanged(cols=1, rows=1000),
        tp.Refused(message="No.", code="forbidden"),
        tp.Exited(status=129, signal="SIGHUP"),
        tp.Closed(reason="Bye.", code="revoked"),
    ):
        assert tp.decode_server(tp.encode(message)) == message
    assert tp.decode_client('{"type":"resize","cols":120,"rows":40}') == tp.Resize(cols=120, rows=40)
    assert tp.decode_client('{"type":"grant","email":"b@x.io","role":"driver"}') == tp.Grant(
        email="b@x.io", role="driver"
    )
    join = tp.decode_target('{"type":"join","terminal_id":"term_abcdefghijkl","email":"b@x.io","read_only":true}')
    assert join == tp.JoinTerminal(terminal_id="term_abcdefghijkl", email="b@x.io", read_only=True)
    assert tp.decode_target('{"type":"open","email":"a@x.io"}') == tp.OpenTerminal(email="a@x.io", cols=80, rows=24)


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"resize","cols":0,"rows":24}',
        '{"type":"resize","cols":80,"rows":1001}',
        '{"type":"resize","cols":"80","rows":24}',
        '{"type":"grant","email":"b@x.io","role":"owner"}',
        '{"type":"type","data":"rm -rf /"}',
        "not json",
    ],
)
def test_person_frames_outside_the_grammar_are_refused(frame: str) -> None:
    with pytest.raises(msgspec.MsgspecError):
        tp.decode_client(frame)


def test_terminal_ids_fit_their_grammar() -> None:
    ids = {new_terminal_id() for _ in range(200)}
    assert len(ids) == 200
    for terminal_id in ids:
        assert tp.decode_target(tp.encode(tp.JoinTerminal(terminal_id=terminal_id, email="a@x.io")))


def test_the_workspace_folder_the_container_names(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    assert workspace_folder({"CODESPACES": "true", "CODESPACE_VSCODE_FOLDER": str(project)}) == str(project)
    assert workspace_folder({"DEVWORKSPACE_ID": "w1", "PROJECT_SOURCE": str(project)}) == str(project)
    assert workspace_folder({"PROJECTS_ROOT": str(tmp_path)}) == str(tmp_path)
    assert workspace_folder({"CODESPACE_VSCODE_FOLDER": str(tmp_path / "missing")}) is None
    assert workspace_folder({"CODESPACE_VSCODE_FOLDER": "relative/path"}) is None
    assert workspace_folder({"PROJECT_SOURCE": str(project)}) is None  # not a Devfile workspace
    assert workspace_folder({}) is None


def test_the_facts_carry_only_a_workspace_folder_that_fits_the_grammar() -> None:
    assert reported_folder("/workspaces/demo") == "/workspaces/demo"
    assert reported_folder(None) == reported_folder("") == ""
    for odd in ("/work\nspaces", "/a\x1b[31m", "/a\u202eb", "/" + "a" * 2000):
        assert reported_folder(odd) == ""
        with pytest.raises(Invalid, match="is not an absolute path") as refused:
            check_facts(m.ContainerFacts(workspace_folder=odd))
        assert refused.value.hint.startswith("A workspace folder is an absolute path on one line")


def test_the_locale_is_utf8() -> None:
    assert utf8_locale({}) == "C.UTF-8"
    assert utf8_locale({"LANG": "POSIX"}) == "C.UTF-8"
    assert utf8_locale({"LANG": "en_US.UTF-8"}) == "en_US.UTF-8"
    assert utf8_locale({"LANG": "C", "LC_ALL": "de_DE.utf8"}) == "de_DE.utf8"
