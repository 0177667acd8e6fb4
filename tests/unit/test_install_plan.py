"""pair's installer (pair.container.install), the part of install.sh after the virtualenv: its plan
for a given system, carried out for real in a temporary root (every fixed place moved under
it, `sshd` a stub that accepts or refuses a config), dry runs, re-runs, the login user's password
field, and --uninstall. install.sh itself, on a real Debian root, is tests/install/test_debian.py."""

from __future__ import annotations

import io
import os
import stat
import subprocess
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pair.api.tokens import SPACE_TOKEN
from pair.container import configs, launcher
from pair.container.install import login
from pair.container.install.__main__ import main
from pair.container.install.layout import Layout
from pair.container.install.plan import Host, Options, install_plan, uninstall_plan
from pair.container.install.steps import (
    Change,
    Check,
    InstallError,
    Link,
    MakeDir,
    Note,
    Ok,
    Output,
    RemoveDir,
    RemoveTree,
    Run,
    Step,
    Warn,
    WriteFile,
    carry_out,
    recorded,
)
from tests.install.debian import diff, tree
from tests.support.tools import need_tool

TOKEN = "eyJhbGciOiJFZERTQSJ9.eyJpc3MiOiJodHRwOi8vYiJ9." + "A" * 86
SHADOW = "root:!:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\ndev:!$6$salt$hash:19000:0:99999:7:::\n"


def system(root: Path, *, sshd_says: str = "", sshd_status: int = 0) -> tuple[Layout, Host]:
    """A bare system under `root` (the directories a distribution has, /etc/shadow) and its facts;
    its sshd is a stub answering `-t` with `sshd_status`, printing `sshd_says`."""
    layout = Layout.under(root)
    for directory in ("etc/ssh", "usr/local/bin", "var/run", "var/log"):
        (root / directory).mkdir(parents=True)
    layout.shadow.write_text(SHADOW)
    layout.shadow.chmod(0o640)
    layout.prefix.mkdir(parents=True)  # install.sh made PREFIX (and the venv) before handing over
    sshd = root / "stub-sshd"
    sshd.write_text(f"#!/bin/sh\nprintf '%s' '{sshd_says}'\nexit {sshd_status}\n")
    sshd.chmod(0o755)
    return layout, Host(sshd=str(sshd), openssh=(9, 2))


OPTIONS = Options(ssh_port=2299, ssh_user="root", token=TOKEN, token_source="--token", broker_url="http://b")


def run(plan: Sequence[Step], layout: Layout, *, dry_run: bool = False) -> tuple[int, list[str]]:
    """Carry `plan` out; (changes, the lines printed)."""
    printed = io.StringIO()
    changes = carry_out(plan, dry_run=dry_run, created=layout.created, output=Output(out=printed, err=printed))
    return changes, printed.getvalue().splitlines()


def writes(plan: list[Step]) -> dict[Path, WriteFile]:
    return {step.path: step for step in plan if isinstance(step, WriteFile)}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_the_plan_for_a_bare_system_writes_every_file_with_its_mode_and_content(tmp_path: Path) -> None:
    layout, host = system(tmp_path)
    plan = install_plan(OPTIONS, layout, host)
    files = writes(plan)
    prefix = str(layout.prefix)
    expected = {
        layout.launcher: (launcher.text(layout.prefix), 0o755),
        layout.sshd_config: (configs.sshd_config(prefix, 2299, openssh=(9, 2)), 0o644),
        layout.supervisord_conf: (
            configs.supervisord_conf(str(layout.conf_d), str(layout.run_dir), str(layout.log_dir)),
            0o644,
        ),
        layout.programs_conf: (
            configs.programs(prefix, str(layout.sshd_config), host.sshd, str(layout.log_dir)),
            0o644,
        ),
        layout.prefix / "ssh-user": ("root\n", 0o644),
        layout.prefix / "bootstrap.txt": (TOKEN + "\n", 0o600),
        layout.prefix / "broker-url": ("http://b\n", 0o644),
        layout.prefix / "ssh-port": ("2299\n", 0o644),
        layout.bin_dir / "supervisord": (configs.supervisord_launcher(str(layout.venv / "bin" / "supervisord")), 0o755),
    }
    assert {path: (step.content, step.mode) for path, step in files.items()} == expected
    assert files[layout.sshd_config].check == (host.sshd, "-t", "-f")  # checked before it replaces anything
    assert files[layout.sshd_config].does == f"write {layout.sshd_config} (port 2299) and check it with sshd -t"
    assert plan[0] == Ok("the Space token from --token is well-formed")
    [keygen] = [step for step in plan if isinstance(step, Run)]
    assert keygen.argv == (
        "ssh-keygen",
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-C",
        "pair-space",
        "-f",
        str(layout.host_key),
    )
    links = {step.path: step.target for step in plan if isinstance(step, Link)}
    assert links == {layout.bin_dir / "supervisorctl": layout.venv / "bin" / "supervisorctl"}
    # What --uninstall removes: created outside PREFIX by install.sh, and nothing else.
    assert {step.record for step in plan if isinstance(step, Change) and step.record} == {
        layout.supervisor_dir,
        layout.conf_d,
        layout.log_dir,
        layout.supervisord_conf,
        layout.bin_dir / "supervisord",
        *links,
    }
    assert [s for s in plan if isinstance(s, login.Unlock)] == [
        login.Unlock(
            does='unlock root for key logins (its password field "!" becomes "*": still no password)',
            user="root",
            shadow=layout.shadow,
        )
    ]


def test_carried_out_it_installs_exactly_that_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    need_tool("ssh-keygen")
    layout, host = system(tmp_path)
    changes, lines = run(install_plan(OPTIONS, layout, host), layout)
    assert changes == len(lines) - 1  # one line per change, and the token's ok
    assert mode(layout.launcher) == 0o755 and layout.launcher.read_text() == launcher.text(layout.prefix)
    assert mode(layout.prefix / "bootstrap.txt") == 0o600
    assert (layout.prefix / "ssh-port").read_text() == "2299\n"
    assert layout.host_key.is_file() and layout.host_key.with_name("ssh_host_ed25519_key.pub").is_file()
    assert layout.run_sshd.is_dir()
    assert mode(layout.bin_dir / "supervisord") == 0o755 and not (layout.bin_dir / "supervisord").is_symlink()
    assert os.readlink(layout.bin_dir / "supervisorctl") == str(layout.venv / "bin" / "supervisorctl")
    assert layout.shadow.read_text() == SHADOW.replace("root:!:", "root:*:", 1)  # only root's field
    assert mode(layout.shadow) == 0o640
    assert recorded(layout.created) == [
        layout.bin_dir / "supervisord",
        layout.bin_dir / "supervisorctl",
        layout.supervisor_dir,
        layout.conf_d,
        layout.log_dir,
        layout.supervisord_conf,
    ]
    assert not list(tmp_path.rglob("*.pair-new"))

    before = tree(tmp_path)
    again = install_plan(OPTIONS, layout, host)
    assert [step for step in again if isinstance(step, Change)] == []
    assert Check((host.sshd, "-t", "-f", str(layout.sshd_config)), f"sshd rejects {layout.sshd_config}") in again
    assert run(again, layout)[0] == 0
    assert diff(before, tree(tmp_path)) == []


SECRETS = {"PAIR_SPACE_KEY": "pair_sk_aHR0cDovL2I.sss", "PAIR_SPACE_TOKEN": TOKEN}


def started_supervisord(layout: Layout, command: str) -> dict[str, str]:
    """The environment the venv's `supervisord` is started with when a lifecycle `command` runs
    with the bootstrap secrets in its environment and install.sh's bin_dir first on PATH (a stand-in
    supervisord prints its own /proc/self/environ)."""
    real = layout.venv / "bin" / "supervisord"
    real.parent.mkdir(parents=True, exist_ok=True)
    real.write_text("#!/bin/sh\ncat /proc/self/environ\n")
    real.chmod(0o755)
    env = {"PATH": f"{layout.bin_dir}:/usr/bin:/bin", **SECRETS}
    done = subprocess.run(["sh", "-c", command], env=env, capture_output=True, timeout=30, check=True)
    return dict(entry.split("=", 1) for entry in done.stdout.decode().split("\0") if "=" in entry)


@pytest.mark.parametrize(
    "command",
    [
        configs.START_SUPERVISORD,  # the Feature's (devcontainer.json) and the Devfile's, today
        "supervisord -c /etc/supervisor/supervisord.conf",  # theirs before START_SUPERVISORD
        "supervisord",
    ],
)
def test_the_supervisord_on_path_never_carries_the_bootstrap_secrets(command: str, tmp_path: Path) -> None:
    """Reproduction: supervisord started by the older lifecycle command kept PAIR_SPACE_KEY in its
    environment (and /proc/PID/environ). The supervisord install.sh puts on PATH drops both."""
    need_tool("ssh-keygen")
    layout, host = system(tmp_path)
    run(install_plan(OPTIONS, layout, host), layout)
    environment = started_supervisord(layout, command)
    assert environment["PATH"].startswith(str(layout.bin_dir))  # it ran, with the rest of the environment
    assert set(SECRETS) & set(environment) == set()


def test_an_older_install_s_supervisord_link_becomes_the_launcher(tmp_path: Path) -> None:
    """An upgrade: install.sh before the launcher linked supervisord into bin_dir (on PATH, so the
    plan used to say `ok: supervisord is on PATH`); running it again replaces the link."""
    need_tool("ssh-keygen")
    layout, host = system(tmp_path)
    run(install_plan(OPTIONS, layout, host), layout)
    link = layout.bin_dir / "supervisord"
    link.unlink()
    link.symlink_to(layout.venv / "bin" / "supervisord")  # what an older install.sh left
    assert SECRETS.keys() <= started_supervisord(layout, "supervisord -c conf").keys()

    on_path = replace(host, on_path={"supervisord": str(link), "supervisorctl": str(layout.bin_dir / "supervisorctl")})
    changes, lines = run(install_plan(OPTIONS, layout, on_path), layout)
    assert changes == 1 and f"pair: update the supervisord launcher {link}" in "\n".join(lines)
    assert not link.is_symlink() and mode(link) == 0o755
    assert set(SECRETS) & set(started_supervisord(layout, "supervisord -c conf")) == set()
    assert recorded(layout.created).count(link) == 1  # --uninstall removes it, once
    assert [s for s in install_plan(OPTIONS, layout, on_path) if isinstance(s, Change)] == []


def test_an_image_s_own_supervisord_is_left_alone(tmp_path: Path) -> None:
    layout, host = system(tmp_path)
    theirs = replace(host, on_path={"supervisord": "/usr/bin/supervisord"})
    plan = install_plan(OPTIONS, layout, theirs)
    assert Ok("supervisord is on PATH (/usr/bin/supervisord)") in plan
    assert layout.bin_dir / "supervisord" not in writes(plan)
    someone_elses = layout.bin_dir / "supervisord"
    someone_elses.write_text("#!/bin/sh\n")  # not install.sh's (not recorded, not a link into PREFIX)
    assert Ok(f"{someone_elses} exists") in install_plan(OPTIONS, layout, host)


def test_a_dry_run_prints_every_change_and_makes_none(tmp_path: Path) -> None:
    layout, host = system(tmp_path)
    before = tree(tmp_path)
    plan = install_plan(OPTIONS, layout, host)
    changes, lines = run(plan, layout, dry_run=True)
    assert diff(before, tree(tmp_path)) == []
    assert changes == sum(isinstance(step, Change) for step in plan) > 10
    assert f"pair: would write {layout.prefix}/bootstrap.txt" in lines
    assert f"pair: would create {layout.conf_d}" in lines
    assert all(line.startswith(("pair: would ", "pair: ok: ")) for line in lines)


def test_a_file_only_in_the_wrong_mode_gets_its_mode(tmp_path: Path) -> None:
    layout, host = system(tmp_path)
    (layout.prefix / "bootstrap.txt").write_text(TOKEN + "\n")
    (layout.prefix / "bootstrap.txt").chmod(0o644)  # readable by everyone: not for a token
    _, lines = run([s for s in install_plan(OPTIONS, layout, host) if "bootstrap.txt" in str(s)], layout)
    assert lines == [f"pair: set {layout.prefix}/bootstrap.txt to mode 600"]
    assert mode(layout.prefix / "bootstrap.txt") == 0o600


def test_a_config_sshd_refuses_replaces_nothing(tmp_path: Path) -> None:
    layout, host = system(tmp_path, sshd_says="line 3: Bad configuration option: MaxStartups", sshd_status=255)
    layout.sshd_config.write_text("# the config that works\n")
    plan = [s for s in install_plan(OPTIONS, layout, host) if isinstance(s, WriteFile) and s.path == layout.sshd_config]
    with pytest.raises(InstallError) as refused:
        run(plan, layout)
    assert refused.value.message == (
        "sshd rejects the config pair rendered: line 3: Bad configuration option: MaxStartups"
    )
    assert layout.sshd_config.read_text() == "# the config that works\n"
    assert not list(tmp_path.rglob("*.pair-new"))


def test_an_unchanged_config_that_sshd_now_refuses_stops_the_install(tmp_path: Path) -> None:
    layout, host = system(tmp_path, sshd_says="no hostkeys available", sshd_status=1)
    layout.sshd_config.write_text(configs.sshd_config(str(layout.prefix), 2299, openssh=(9, 2)))
    layout.sshd_config.chmod(0o644)
    plan = install_plan(OPTIONS, layout, host)
    checks = [step for step in plan if isinstance(step, Check)]
    with pytest.raises(InstallError, match=f"^sshd rejects {layout.sshd_config}: no hostkeys available$"):
        run(checks, layout)
    assert run(checks, layout, dry_run=True)[0] == 0  # a dry run runs nothing


@pytest.mark.parametrize(
    ("existing", "said"),
    [
        ("[include]\nfiles = /etc/supervisor/conf.d/*.conf\n", [Ok("{conf} (not ours) includes {conf_d}/*.conf")]),
        (
            "[supervisord]\n",
            [
                Warn("{conf} (not ours) has no [include] section, so supervisord will NOT run pair's sshd and agent."),
                Warn("Add these two lines to it:  [include]  and  files = {conf_d}/*.conf"),
            ],
        ),
        (
            "[include]\nfiles = other/*.ini\n",
            [
                Warn(
                    "{conf} (not ours) has an [include] that may not cover {conf_d}/*.conf; pair's programs are in "
                    "{conf_d}/pair.conf."
                )
            ],
        ),
    ],
)
def test_a_supervisord_conf_of_someone_elses_is_never_rewritten(
    existing: str, said: list[Ok | Warn], tmp_path: Path
) -> None:
    layout, host = system(tmp_path)
    layout.supervisor_dir.mkdir(parents=True)
    layout.supervisord_conf.write_text(existing.replace("/etc/supervisor", str(layout.supervisor_dir)))
    plan = install_plan(OPTIONS, layout, host)
    assert layout.supervisord_conf not in writes(plan)
    conf, conf_d = layout.supervisord_conf, layout.conf_d
    for step in said:
        assert type(step)(step.text.format(conf=conf, conf_d=conf_d)) in plan


def test_a_running_supervisord_loads_changed_programs(tmp_path: Path) -> None:
    layout, _ = system(tmp_path)
    host = Host(sshd="/usr/sbin/sshd", supervisord_running=True)
    plan = install_plan(OPTIONS, layout, host)
    update = (str(layout.supervisorctl), "-c", str(layout.supervisord_conf), "update")
    assert [s.argv for s in plan if isinstance(s, Run)][-1] == update
    assert plan[-1] == Note("note: run `supervisorctl restart sshd` to apply the new sshd config")
    stopped = install_plan(OPTIONS, layout, Host(sshd="/usr/sbin/sshd", supervisord_running=False))
    assert update not in [s.argv for s in stopped if isinstance(s, Run)]


# -- the login user -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "kind"),
    [
        ("!", login.Field.LOCKED),
        ("!!", login.Field.LOCKED),
        ("!*", login.Field.LOCKED),
        ("!locked", login.Field.LOCKED),  # Fedora
        ("!$6$salt$hash", login.Field.LOCKED_HASH),
        ("*", login.Field.USABLE),
        ("", login.Field.USABLE),
        ("$y$j9T$salt$hash", login.Field.USABLE),
    ],
)
def test_password_fields_as_sshd_without_pam_reads_them(field: str, kind: login.Field) -> None:
    assert login.classify(field) is kind


def test_a_locked_password_is_left_alone_with_a_warning(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    shadow.write_text(SHADOW)
    assert login.plan("dev", shadow) == [
        Warn("dev has a locked password; sshd (UsePAM no) refuses it even with a key. Unlock it: usermod -U dev")
    ]
    assert login.plan("daemon", shadow) == [Ok("daemon can log in with a key")]
    shadow.chmod(0)
    if os.geteuid() != 0:  # root reads it anyway
        assert login.plan("root", shadow) == [
            Warn(f"cannot read {shadow} (not root); a real run makes sure root is not locked")
        ]


names = st.text("abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=8)
fields = st.text(max_size=12).filter(lambda f: ":" not in f and "\n" not in f)
shadow_lines = st.lists(
    st.tuples(names, fields, st.lists(fields, max_size=7)).map(lambda t: ":".join([t[0], t[1], *t[2]])),
    max_size=6,
)


@given(lines=shadow_lines, user=names, ending=st.sampled_from(["", "\n", "\r\n"]))
def test_unlocking_changes_the_users_password_field_and_no_other_byte(lines: list[str], user: str, ending: str) -> None:
    text = "\n".join(lines) + ending
    changed = login.without_password(text, user)
    before, after = text.split("\n"), changed.split("\n")
    assert len(before) == len(after)
    for old, new in zip(before, after, strict=True):
        parts = old.split(":")
        if len(parts) > 1 and parts[0] == user:
            assert new.split(":") == [parts[0], "*", *parts[2:]]
        else:
            assert new == old
    assert login.password_field(changed, user) in (None, "*")


# -- --uninstall ------------------------------------------------------------------------------------


def test_uninstall_removes_what_install_made_and_nothing_else(tmp_path: Path) -> None:
    need_tool("ssh-keygen")
    layout, host = system(tmp_path)
    (layout.venv / "bin").mkdir(parents=True)
    clean = tree(tmp_path)
    run(install_plan(OPTIONS, layout, host), layout)
    layout.log_dir.joinpath("pair-agent.log").write_text("agent\n")  # supervisord's, started from our config
    (layout.bin_dir / "other").write_text("someone else's\n")

    dry_before = tree(tmp_path)
    assert run(uninstall_plan(layout, host), layout, dry_run=True)[1][-1] == f"pair: would remove {layout.prefix}"
    assert diff(dry_before, tree(tmp_path)) == []

    plan = uninstall_plan(layout, host)
    assert plan[-1] == RemoveTree(does=f"remove {layout.prefix}", path=layout.prefix)
    run(plan, layout)
    after = tree(tmp_path)
    assert sorted(after.keys() - clean.keys()) == ["run", "run/sshd", "usr/local/bin/other"]  # as install.sh left them
    assert sorted(clean.keys() - after.keys()) == ["opt/pair", "opt/pair/venv", "opt/pair/venv/bin"]
    assert layout.shadow.read_text() != SHADOW  # the "*" password field stays
    assert uninstall_plan(layout, host) == []


def test_uninstall_keeps_a_directory_someone_else_put_files_in(tmp_path: Path) -> None:
    need_tool("ssh-keygen")
    layout, host = system(tmp_path)
    run(install_plan(OPTIONS, layout, host), layout)
    (layout.conf_d / "mine.conf").write_text("[program:mine]\n")
    plan = uninstall_plan(layout, host)
    removed_dirs = [s.path for s in plan if isinstance(s, RemoveDir)]
    assert layout.conf_d not in removed_dirs and layout.supervisor_dir not in removed_dirs
    assert layout.log_dir in removed_dirs
    run(plan, layout)
    assert (layout.conf_d / "mine.conf").exists() and not layout.programs_conf.exists()
    assert not layout.supervisord_conf.exists()


@pytest.mark.parametrize(("ours", "command"), [(True, "shutdown"), (False, "update")])
def test_uninstall_stops_pairs_programs_in_a_running_supervisord(ours: bool, command: str, tmp_path: Path) -> None:
    layout, _ = system(tmp_path)
    layout.supervisor_dir.mkdir(parents=True)
    layout.supervisord_conf.write_text("[include]\n")
    if ours:
        layout.created.write_text(f"{layout.supervisord_conf}\n")
    plan = uninstall_plan(layout, Host(supervisord_running=True))
    [stop] = [s for s in plan if isinstance(s, Run)]
    assert stop.argv == (str(layout.supervisorctl), "-c", str(layout.supervisord_conf), command)
    assert not any(isinstance(s, MakeDir) for s in plan)


# -- the command line install.sh calls --------------------------------------------------------------


def call(argv: list[str], stdin: bytes, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    return main(argv)


def test_a_token_bootstrap_would_refuse_stops_the_installer_before_anything(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    prefix = tmp_path / "pair"
    argv = ["install", f"--prefix={prefix}", "--token-source=--token", "--sshd=/nonexistent/sshd"]
    assert call(argv, b"pair_ak_" + b"x" * 43 + b"\r\n", capsys, monkeypatch) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "pair: error: The Space token from --token is not usable: it is an auth key (pair_ak_…), not a Space token.\n"
        f"pair: hint: {SPACE_TOKEN.hint}\n"
    )
    assert not prefix.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["install", "--prefix=/opt/../etc"],
        ["install", "--prefix=opt/pair"],
        ["install", "--ssh-port=0"],
        ["install", "--ssh-port=2222; id"],
        ["install", "--ssh-user=-oProxyCommand"],
        ["install", "--broker-url=ftp://b"],
        ["install", "--broker-url=https://b/'$(id)'"],
        ["uninstall", "--prefix=/opt/my pair"],
    ],
)
def test_values_for_configs_are_checked_again_against_their_grammar(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SystemExit) as usage:
        call(argv, b"", capsys, monkeypatch)
    assert usage.value.code == 2
    assert "error: argument --" in capsys.readouterr().err
