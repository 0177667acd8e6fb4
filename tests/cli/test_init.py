"""`pair spaces init`: pair added to a project's devcontainer.json and Devfile for real (files in a
temporary project, read back by an independent JSON5 parser, the published JSON Schemas and the
devcontainer CLI's own parser), and the Codespaces secret through a fake `gh` that records its calls."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import json5
import jsonschema
import pytest
from ruamel.yaml import YAML

from pair.api.tokens import space_key
from pair.cli.app import run
from pair.project.devcontainer import COMMANDS, FEATURE_ID
from tests.cli.helpers import assert_error
from tests.support import fake_gh
from tests.support.cli import Result

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "tests" / "install" / "schemas"
DEVCONTAINER_CLI = Path(sys.executable).parent.parent / "npm" / "node_modules" / ".bin" / "devcontainer"
START, ATTACH = COMMANDS["postStartCommand"], COMMANDS["postAttachCommand"]
KEY = space_key("https://pair.example.com", "7f3a9c2e41b84d0f9a6e5c3b2d1f0e9a7f3a9c2e41b")
ONE_CONTAINER = (
    "schemaVersion: 2.2.0\nmetadata:\n  name: x\ncomponents:\n  - name: dev\n    container:\n      image: debian:12\n"
)

COMMENTED = """\
// For format details, see https://aka.ms/devcontainer.json. For config options, see the
// README at: https://github.com/devcontainers/templates/tree/main/src/python
/* A block comment
   over three lines, with "quotes" and { braces } */
{
\t"name": "Python 3", /* trailing block */
\t// Or use a Dockerfile or Docker Compose file. More info: https://containers.dev/guide/dockerfile
\t"image": "mcr.microsoft.com/devcontainers/python:1-3.12-bullseye",

  // odd indentation from here on
     "features": {
\t    // "ghcr.io/devcontainers/features/node:1": {},
\t    "ghcr.io/devcontainers/features/github-cli:1": {
\t        "version": "latest", // pinned later
\t    },
\t  },

\t// Use 'forwardPorts' to make a list of ports inside the container available locally.
\t"forwardPorts": [8000, /* api */ 5432,],

\t// Use 'postCreateCommand' to run commands after the container is created.
\t"postCreateCommand": "pip3 install --user -r requirements.txt",
\t"postStartCommand": "npm run watch", // the dev server
\t"customizations": {"vscode": {"extensions": ["ms-python.python"]}}, /* one line */
\t// Uncomment to connect as root instead. More info: https://aka.ms/dev-containers-non-root.
\t// "remoteUser": "root"
}
// end of file
"""
COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL)  # fine for these fixtures: no // or /* inside strings

COMMENTED_DEVFILE = """\
# The team's workspace. Keep this file small.
schemaVersion: 2.2.0
metadata:
    name: shop   # shown in the dashboard
    displayName: "Shop"
components:
    # the editor runs here
    - name: tools
      container:
          image: quay.io/devfile/universal-developer-image:ubi8-latest
          memoryLimit: 3Gi   # builds need it
          endpoints:
              - name: web
                targetPort: 8080
    - name: m2
      volume:
          size: 1G
commands:
    # build the app
    - id: build
      exec:
          component: tools
          commandLine: 'mvn package'   # quoted on purpose
          group: {kind: build, isDefault: true}
events:
    postStart:
        - build   # warm the cache
# trailing comment
"""


def run_init(project: Path, *args: str, input: str = "") -> Result:
    """`pair spaces init ARGS` in-process, from `project`, with `input` as a non-terminal stdin."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    old_cwd, old_stdin = os.getcwd(), sys.stdin
    os.chdir(project)
    sys.stdin = io.StringIO(input)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            run(["spaces", "init", *args])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        os.chdir(old_cwd)
        sys.stdin = old_stdin
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project folder; PATH holds git only (no gh unless a test installs its fake)."""
    monkeypatch.setenv("PATH", str(fake_gh.tools_dir(tmp_path / "tools")))
    folder = tmp_path / "shop"
    folder.mkdir()
    return folder


def devcontainer_schema_errors(text: str) -> list[str]:
    schema = json.loads((SCHEMAS / "devContainer.base.schema.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)  # 2019-09: unevaluatedProperties
    return [e.message for e in validator.iter_errors(json5.loads(text))]


def devfile_schema_errors(text: str) -> list[str]:
    schema = json.loads((SCHEMAS / "devfile-2.2.0.schema.json").read_text())
    data = YAML(typ="safe").load(text)
    return [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(data)]


def devcontainer_cli_reads(project: Path, tmp_path: Path) -> dict[str, Any]:
    """The devcontainer CLI's own parse of the project's configuration (a stub docker that exits 0
    lets `read-configuration` run without an engine)."""
    if not DEVCONTAINER_CLI.exists():
        message = f"{DEVCONTAINER_CLI} is missing (scripts/node-tools.sh installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    stub = tmp_path / "docker-stub"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    result = subprocess.run(
        [str(DEVCONTAINER_CLI), "read-configuration", "--workspace-folder", str(project), "--docker-path", str(stub)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PATH": f"{os.environ['PATH']}:/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    configuration: dict[str, Any] = json.loads(result.stdout)["configuration"]
    configuration.pop("configFilePath")
    return configuration


# --------------------------------------------------------------------------------------------------
# devcontainer.json


def test_a_devcontainer_json_full_of_comments_keeps_every_one_and_passes_the_schema(project: Path) -> None:
    config = project / ".devcontainer" / "devcontainer.json"
    config.parent.mkdir()
    config.write_text(COMMENTED)
    before = json5.loads(COMMENTED)

    result = run_init(project, "--no-secret")

    assert result.ok, result
    assert result.out == (
        f"Added pair to .devcontainer/devcontainer.json: the Feature {FEATURE_ID}, postStartCommand, "
        'postAttachCommand, remoteUser "root".\n'
    )
    text = config.read_text()
    assert COMMENT.findall(text) == COMMENT.findall(COMMENTED)  # every comment, verbatim, in order
    assert devcontainer_schema_errors(text) == []
    after = json5.loads(text)
    assert list(after) == [*before, "postAttachCommand", "remoteUser"]  # the key order kept
    assert after == {
        **before,
        "features": {**before["features"], FEATURE_ID: {}},
        "postStartCommand": {"project": "npm run watch", "pair": START},
        "postAttachCommand": ATTACH,
        "remoteUser": "root",
    }
    # The lines around the additions are the user's own, formatting and all.
    assert (
        '\t    "ghcr.io/devcontainers/features/github-cli:1": {\n\t        "version": "latest", // pinned later\n'
        in text
    )
    assert (
        f'\t    }},\n\t    "{FEATURE_ID}": {{}},\n\t  }},\n' in text
    )  # at its siblings' indentation, trailing comma kept
    assert '\t"postStartCommand": {\n\t\t"project": "npm run watch",\n' in text
    assert '"customizations": {"vscode": {"extensions": ["ms-python.python"]}}, /* one line */\n' in text
    assert text.endswith(
        f'\t// "remoteUser": "root"\n\t"postAttachCommand": "{ATTACH}",\n\t"remoteUser": "root",\n}}\n// end of file\n'
    )  # after the last comment, with the file's trailing comma


def test_running_it_twice_changes_nothing(project: Path) -> None:
    config = project / ".devcontainer.json"
    config.write_text(COMMENTED)
    assert run_init(project, "--no-secret").ok
    written = config.read_bytes()
    stamp = config.stat().st_mtime_ns

    again = run_init(project, "--no-secret")

    assert again.ok and again.out == "pair is already set up in .devcontainer.json; nothing to change.\n"
    assert config.read_bytes() == written and config.stat().st_mtime_ns == stamp  # not even rewritten


def test_the_devcontainer_cli_reads_what_init_wrote(project: Path, tmp_path: Path) -> None:
    (project / ".devcontainer").mkdir()
    (project / ".devcontainer" / "devcontainer.json").write_text(COMMENTED)
    assert run_init(project, "--no-secret").ok

    configuration = devcontainer_cli_reads(project, tmp_path)

    assert configuration == json5.loads((project / ".devcontainer" / "devcontainer.json").read_text())
    assert configuration["features"][FEATURE_ID] == {}
    assert configuration["postStartCommand"] == {"project": "npm run watch", "pair": START}
    assert configuration["postAttachCommand"] == ATTACH
    assert configuration["remoteUser"] == "root"


@pytest.mark.parametrize(
    ("existing", "combined"),
    [
        ('"npm run watch"', {"project": "npm run watch", "pair": START}),
        ('["npm", "run", "watch"]', {"project": ["npm", "run", "watch"], "pair": START}),
        (
            '{"server": "npm start", "db": ["pg_ctl", "start"]}',
            {"server": "npm start", "db": ["pg_ctl", "start"], "pair": START},
        ),
        (json.dumps(f"sudo {START} && echo up"), f"sudo {START} && echo up"),  # already there
        (json.dumps({"pair": "sudo supervisord"}), {"pair": "sudo supervisord"}),  # the project's own "pair" entry
        # pair's own before START_SUPERVISORD: kept (the supervisord install.sh puts on PATH drops
        # the secrets itself), never joined by a second supervisord, which would fail to start
        ('"supervisord -c /etc/supervisor/supervisord.conf"', "supervisord -c /etc/supervisor/supervisord.conf"),
        (
            '["supervisord", "-c", "/etc/supervisor/supervisord.conf"]',
            ["supervisord", "-c", "/etc/supervisor/supervisord.conf"],
        ),
    ],
)
def test_an_existing_post_start_command_is_combined_never_replaced(
    project: Path, tmp_path: Path, existing: str, combined: object
) -> None:
    config = project / ".devcontainer" / "devcontainer.json"
    config.parent.mkdir()
    config.write_text(f'{{\n  "image": "debian:12",\n  "postStartCommand": {existing} // ours\n}}\n')

    assert run_init(project, "--no-secret").ok

    text = config.read_text()
    assert json5.loads(text)["postStartCommand"] == combined
    assert "// ours" in text
    assert devcontainer_schema_errors(text) == []
    assert devcontainer_cli_reads(project, tmp_path)["postStartCommand"] == combined


def test_an_existing_post_attach_command_in_object_form_gains_pair_s_entry(project: Path) -> None:
    config = project / ".devcontainer.json"
    config.write_text('{"image": "debian:12",\n "postAttachCommand": {\n   "git": "git fetch", // quiet\n }\n}')
    assert run_init(project, "--no-secret").ok
    assert config.read_text().startswith(
        f'{{"image": "debian:12",\n "postAttachCommand": {{\n   "git": "git fetch", // quiet\n'
        f'   "pair": "{ATTACH}",\n }},'
    )


def test_a_project_without_configuration_gets_a_new_devcontainer_json(project: Path, tmp_path: Path) -> None:
    result = run_init(project, "--no-secret")  # no terminal to ask on: a devcontainer, the common case

    assert result.ok and result.out == "Created .devcontainer/devcontainer.json with pair set up.\n"
    text = (project / ".devcontainer" / "devcontainer.json").read_text()
    assert text.startswith("// ")
    assert devcontainer_schema_errors(text) == []
    assert json5.loads(text) == {
        "name": "shop",
        "image": "mcr.microsoft.com/devcontainers/base:bookworm",
        "features": {FEATURE_ID: {}},
        "postStartCommand": START,
        "postAttachCommand": ATTACH,
        "remoteUser": "root",
    }
    assert devcontainer_cli_reads(project, tmp_path)["features"] == {FEATURE_ID: {}}
    assert (
        run_init(project, "--no-secret").out
        == "pair is already set up in .devcontainer/devcontainer.json; nothing to change.\n"
    )


def test_the_feature_readme_shows_what_init_adds() -> None:
    """The Feature's README and docs/install.md describe this configuration by hand: they must agree."""
    readme = (REPO / "devcontainer-feature" / "src" / "pairspaces" / "README.md").read_text()
    examples = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", readme, re.DOTALL)]
    assert examples
    for example in examples:
        assert FEATURE_ID in example["features"]
        assert example["postStartCommand"] == START and example["postAttachCommand"] == ATTACH
        assert example["remoteUser"] == "root"


def test_the_spec_s_config_locations_are_found_in_order(project: Path) -> None:
    (project / ".devcontainer" / "python").mkdir(parents=True)
    nested = project / ".devcontainer" / "python" / "devcontainer.json"
    nested.write_text('{"image": "python:3"}')
    result = run_init(project, "--no-secret")
    assert result.ok and "Added pair to .devcontainer/python/devcontainer.json" in result.out  # the only one

    (project / ".devcontainer" / "node").mkdir()
    (project / ".devcontainer" / "node" / "devcontainer.json").write_text('{"image": "node:20"}')
    (project / ".devcontainer.json").write_text('{"image": "debian:12"}')
    result = run_init(project, "--no-secret")
    assert result.ok
    assert result.out.splitlines() == [
        f"Added pair to .devcontainer.json: the Feature {FEATURE_ID}, postStartCommand, postAttachCommand, "
        'remoteUser "root".',
        "Also found .devcontainer/node/devcontainer.json, .devcontainer/python/devcontainer.json: add pair there "
        "with `pair spaces init --file PATH`.",
    ]


def test_several_configurations_in_subfolders_need_a_choice(project: Path) -> None:
    for name in ("node", "python"):
        (project / ".devcontainer" / name).mkdir(parents=True)
        (project / ".devcontainer" / name / "devcontainer.json").write_text('{"image": "debian:12"}')

    refused = run_init(project, "--no-secret")
    assert_error(refused, "several dev container configurations", hint="--file PATH")
    assert (project / ".devcontainer" / "node" / "devcontainer.json").read_text() == '{"image": "debian:12"}'

    chosen = run_init(project, "--no-secret", "--file", ".devcontainer/node/devcontainer.json")
    assert chosen.ok
    assert FEATURE_ID in json5.loads((project / ".devcontainer" / "node" / "devcontainer.json").read_text())["features"]
    assert (project / ".devcontainer" / "python" / "devcontainer.json").read_text() == '{"image": "debian:12"}'


def test_invalid_json_is_refused_and_left_as_it_was(project: Path) -> None:
    config = project / ".devcontainer.json"
    config.write_text('{\n  "image": "debian:12"\n  "features": {}\n}\n')
    result = run_init(project, "--no-secret")
    assert_error(result, ".devcontainer.json is not valid JSON with comments", "(line 3, column 3)", hint="Fix it")
    assert config.read_text() == '{\n  "image": "debian:12"\n  "features": {}\n}\n'


def test_a_non_root_remote_user_is_kept_with_a_warning(project: Path) -> None:
    (project / ".devcontainer.json").write_text('{"image": "debian:12", "remoteUser": "vscode"}')
    result = run_init(project, "--no-secret")
    assert result.ok
    assert json5.loads((project / ".devcontainer.json").read_text())["remoteUser"] == "vscode"
    assert result.err.startswith(
        'warning: .devcontainer.json sets remoteUser to "vscode": pair\'s lifecycle commands need root'
    )


def test_dir_names_the_project(tmp_path: Path, project: Path) -> None:
    result = run_init(tmp_path, "--dir", "shop", "--no-secret")
    assert result.ok and result.out == "Created shop/.devcontainer/devcontainer.json with pair set up.\n"
    assert_error(run_init(tmp_path, "--dir", "nowhere"), "nowhere is not a folder", hint="--dir")


# --------------------------------------------------------------------------------------------------
# Devfile


def test_a_devfile_full_of_comments_keeps_every_one_and_passes_the_schema(project: Path) -> None:
    path = project / "devfile.yaml"
    path.write_text(COMMENTED_DEVFILE)

    result = run_init(project, "--no-secret")

    assert result.ok, result
    assert result.out == (
        "Added pair to devfile.yaml: the command install-pair, the command start-supervisord, the command bootstrap, "
        "events.postStart: install-pair, start-supervisord, bootstrap.\n"
    )
    assert result.err == ""  # ruamel.yaml reproduced the layout exactly: no warning
    text = path.read_text()
    comments = [line[line.index("#") :] for line in COMMENTED_DEVFILE.splitlines() if "#" in line]
    assert [line[line.index("#") :] for line in text.splitlines() if "#" in line] == comments
    assert text.startswith(COMMENTED_DEVFILE[: COMMENTED_DEVFILE.index("events:")])  # everything before, untouched
    assert devfile_schema_errors(text) == []
    data = YAML(typ="safe").load(text)
    assert data["events"]["postStart"] == ["build", "install-pair", "start-supervisord", "bootstrap"]
    added = {c["id"]: c["exec"] for c in data["commands"][1:]}
    assert set(added) == {"install-pair", "start-supervisord", "bootstrap"}
    assert all(e["component"] == "tools" for e in added.values())  # the only container component
    assert added["bootstrap"]["group"] == {"kind": "run", "isDefault": True}  # build's default is another group's

    again = run_init(project, "--no-secret")
    assert again.ok and again.out == "pair is already set up in devfile.yaml; nothing to change.\n"
    assert path.read_text() == text


def test_the_devfile_init_writes_is_the_recommended_one(project: Path) -> None:
    """devfiles/devfile.yaml documents pair's Devfile by hand; init builds it from pair/project/devfile.py."""
    recommended = YAML(typ="safe").load((REPO / "devfiles" / "devfile.yaml").read_text())

    result = run_init(project, "devfile", "--no-secret")

    assert result.ok and result.out.startswith("Created devfile.yaml with pair set up.\n")
    text = (project / "devfile.yaml").read_text()
    assert devfile_schema_errors(text) == []
    created = YAML(typ="safe").load(text)
    assert created["commands"] == recommended["commands"]
    assert created["events"] == recommended["events"]
    del recommended["components"][0]["container"][
        "env"
    ]  # the token placeholder: init writes no secret, not even a slot
    assert created["components"] == recommended["components"]
    assert created["metadata"] == {"name": "shop"}
    # No slot for a secret (the commands name the secrets only to keep them from supervisord).
    assert "env" not in created["components"][0]["container"] and "name: PAIR_SPACE" not in text


def test_a_crlf_devfile_keeps_its_line_endings_and_layout(project: Path) -> None:
    original = COMMENTED_DEVFILE.replace("\n", "\r\n")
    (project / "devfile.yaml").write_bytes(original.encode())
    result = run_init(project, "--no-secret")
    assert result.ok and result.err == ""
    text = (project / "devfile.yaml").read_bytes().decode()
    assert text.startswith(original[: original.index("events:")])
    assert "\n" not in text.replace("\r\n", "")


def test_a_devfile_with_several_containers_needs_the_component_named(project: Path) -> None:
    path = project / ".devfile.yaml"
    original = (
        "schemaVersion: 2.2.0\nmetadata:\n  name: two\ncomponents:\n- name: app\n  container:\n    image: debian:12\n"
        "- name: db\n  container:\n    image: postgres:16\ncommands:\n- id: serve\n  exec:\n    component: app\n"
        "    commandLine: ./serve\n    group:\n      kind: run\n      isDefault: true\n"
    )
    path.write_text(original)

    assert_error(run_init(project, "--no-secret"), "several container components (app, db)", hint="--component NAME")
    assert_error(run_init(project, "--no-secret", "--component", "web"), 'no container component "web"')
    assert path.read_text() == original

    assert run_init(project, "--no-secret", "--component", "app").ok
    text = path.read_text()
    assert text.startswith(original)  # the layout (sequences flush with their key) was kept
    assert devfile_schema_errors(text) == []
    data = YAML(typ="safe").load(text)
    ours = {c["id"]: c["exec"] for c in data["commands"][1:]}
    assert {e["component"] for e in ours.values()} == {"app"}
    assert ours["bootstrap"]["group"] == {"kind": "run"}  # serve stays the one default run command


def test_a_devfile_command_with_pair_s_id_but_not_its_job_is_refused(project: Path) -> None:
    original = (
        ONE_CONTAINER + "commands:\n  - id: bootstrap\n    exec:\n      component: dev\n      commandLine: make deps\n"
    )
    (project / "devfile.yaml").write_text(original)
    assert_error(run_init(project, "--no-secret"), 'a command "bootstrap", and it does not run pair spaces bootstrap')
    assert (project / "devfile.yaml").read_text() == original


def test_devfile_commands_that_already_do_pair_s_jobs_count_whatever_their_ids(project: Path) -> None:
    (project / "devfile.yaml").write_text(
        ONE_CONTAINER + "commands:\n"
        "  - id: setup\n    exec:\n      component: dev\n"
        "      commandLine: curl -fsSL https://pair.example.com/install.sh | sh -s -- --package broker\n"
        "  - id: daemons\n    exec:\n      component: dev\n      commandLine: sudo supervisord\n"
        "  - id: join\n    exec:\n      component: dev\n      commandLine: /opt/pair/pair spaces bootstrap\n"
    )
    result = run_init(project, "--no-secret")
    assert result.ok
    assert result.out == "Added pair to devfile.yaml: events.postStart: setup, daemons, join.\n"


def test_a_file_that_is_not_a_devfile_is_refused(project: Path) -> None:
    (project / "devfile.yaml").write_text("name: not a devfile\n")
    assert_error(run_init(project, "--no-secret"), "devfile.yaml is not a Devfile 2.x")
    (project / "devfile.yaml").write_text(ONE_CONTAINER + "events:\n  postStart: bootstrap\n")
    assert_error(run_init(project, "--no-secret"), '"events.postStart" in devfile.yaml is not a list')
    (project / "devfile.yaml").write_text("a: [1, 2\n")
    assert_error(run_init(project, "--no-secret"), "devfile.yaml is not valid YAML", "(line 2")


def test_a_project_with_both_gets_both_and_an_error_in_one_writes_neither(project: Path) -> None:
    (project / ".devcontainer.json").write_text('{"image": "debian:12"}\n')
    (project / "devfile.yaml").write_text("schemaVersion: 2.2.0\nmetadata:\n  name: x\n")  # no container component

    assert_error(run_init(project, "--no-secret"), "no container component")
    assert (project / ".devcontainer.json").read_text() == '{"image": "debian:12"}\n'  # checked before any write

    (project / "devfile.yaml").write_text(ONE_CONTAINER)
    result = run_init(project, "--no-secret")
    assert result.ok
    assert [line.split(":")[0] for line in result.out.splitlines()] == [
        "Added pair to .devcontainer.json",
        "Added pair to devfile.yaml",
    ]
    only = run_init(project, "devfile", "--no-secret")
    assert only.out == "pair is already set up in devfile.yaml; nothing to change.\n"


# --------------------------------------------------------------------------------------------------
# The Codespaces secret


def git_project(project: Path, remote: str = "git@github.com:octo/app.git") -> None:
    subprocess.run(["git", "init", "-q", str(project)], check=True, timeout=30)
    subprocess.run(["git", "-C", str(project), "remote", "add", "origin", remote], check=True, timeout=30)


def files_holding(root: Path, secret: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_without_gh_it_prints_the_exact_command(project: Path) -> None:
    git_project(project, "https://github.com/octo/app.git")
    result = run_init(project)
    assert result.ok
    assert result.out.splitlines()[1:] == [
        "Codespaces read the Space key from the secret PAIR_SPACE_KEY; never commit it. "
        "With GitHub's CLI (gh) installed, run:",
        "  gh secret set PAIR_SPACE_KEY --app codespaces --repo octo/app < KEY_FILE",
    ]


def test_with_gh_signed_in_the_key_goes_to_the_secret_on_stdin_only(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gh = fake_gh.install(tmp_path / "bin", repo="octo/shop")
    monkeypatch.setenv("PATH", gh.path())
    key_file = tmp_path / "space.key"
    key_file.write_text(KEY + "\n")

    result = run_init(project, "--key-file", str(key_file))

    assert result.ok, result
    assert result.out.splitlines()[-1] == (
        "Set the Codespaces secret PAIR_SPACE_KEY of octo/shop (gh secret set, the key on standard input)."
    )
    calls = gh.calls()
    assert [c["args"] for c in calls] == [
        ["auth", "status"],
        ["repo", "view", "--json", "nameWithOwner", "--jq", ".nameWithOwner"],
        ["secret", "set", "PAIR_SPACE_KEY", "--app", "codespaces", "--repo", "octo/shop"],
    ]
    assert calls[-1]["stdin"] == KEY  # never in argv
    assert KEY not in result.out + result.err
    assert files_holding(project, KEY) == []  # nothing in the project holds it


def test_repo_names_the_repository(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gh = fake_gh.install(tmp_path / "bin", repo="")
    monkeypatch.setenv("PATH", gh.path())
    key_file = tmp_path / "space.key"
    key_file.write_text(KEY)
    assert run_init(project, "--key-file", str(key_file), "--repo", "octo/other").ok
    assert gh.calls()[-1] == {
        "args": ["secret", "set", "PAIR_SPACE_KEY", "--app", "codespaces", "--repo", "octo/other"],
        "stdin": KEY,
    }
    assert_error(
        run_init(project, "--repo", "octo/other; rm -rf /"), "is not a GitHub repository name", hint="--repo OWNER/REPO"
    )


def test_gh_not_signed_in_gets_the_command_printed(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    git_project(project)
    gh = fake_gh.install(tmp_path / "bin", signed_in=False)
    monkeypatch.setenv("PATH", gh.path())
    key_file = tmp_path / "my key"
    key_file.write_text(KEY)
    result = run_init(project, "--key-file", str(key_file))
    assert result.ok
    assert result.out.splitlines()[-2:] == [
        "Codespaces read the Space key from the secret PAIR_SPACE_KEY; never commit it. After `gh auth login`, run:",
        f"  gh secret set PAIR_SPACE_KEY --app codespaces --repo octo/app < '{key_file}'",
    ]
    assert [c["args"][:2] for c in gh.calls()] == [["auth", "status"]]  # no secret set


def test_gh_signed_in_without_a_key_and_no_terminal_prints_the_command(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gh = fake_gh.install(tmp_path / "bin")
    monkeypatch.setenv("PATH", gh.path())
    result = run_init(project)
    assert result.ok
    assert result.out.splitlines()[-2:] == [
        "Codespaces read the Space key from the secret PAIR_SPACE_KEY of octo/app; set it with:",
        "  gh secret set PAIR_SPACE_KEY --app codespaces --repo octo/app < KEY_FILE",
    ]
    assert not any(c["args"][:2] == ["secret", "set"] for c in gh.calls())


def test_gh_refusing_the_secret_is_an_error_with_its_reason(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gh = fake_gh.install(tmp_path / "bin", secret_error="HTTP 403: Must have admin rights to Repository.\x1b[31m")
    monkeypatch.setenv("PATH", gh.path())
    key_file = tmp_path / "space.key"
    key_file.write_text(KEY)
    result = run_init(project, "--key-file", str(key_file))
    assert result.code == 1
    assert "Created .devcontainer/devcontainer.json with pair set up." in result.out  # the file step stands
    assert result.err.splitlines() == [
        "error: gh could not set the Codespaces secret PAIR_SPACE_KEY of octo/app: "
        "HTTP 403: Must have admin rights to Repository. [31m",
        "hint: Check `gh auth status` (you need admin rights on the repository), or run: "
        "gh secret set PAIR_SPACE_KEY --app codespaces --repo octo/app < KEY_FILE",
    ]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--no-secret", "--key-file", "k"], "--no-secret skips the secret"),
        (["--key-file", "missing.key"], "Cannot read the key file missing.key"),
        (["--key-file", "two-lines.key"], "The Space key from two-lines.key is not usable: it has a line break inside"),
        (["devfile", "--key-file", "good.key"], "only a devcontainer.json reads"),
        (["--file", "setup.cfg"], "Cannot tell whether setup.cfg is a devcontainer.json or a Devfile"),
    ],
)
def test_bad_flags_are_refused_before_anything_is_written(project: Path, args: list[str], fragment: str) -> None:
    (project / "two-lines.key").write_text("abc\ndef\n")
    (project / "good.key").write_text(KEY)
    assert_error(run_init(project, *args), fragment)
    assert sorted(p.name for p in project.iterdir()) == ["good.key", "two-lines.key"]


def test_a_defect_in_the_editor_is_an_error_and_writes_nothing(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pair.project import jsonc

    def broken(*args: object) -> str:
        raise jsonc.EditCheckFailed("the edit lost a comment")

    monkeypatch.setattr(jsonc, "apply", broken)
    (project / ".devcontainer.json").write_text('{"image": "debian:12"} // keep\n')
    result = run_init(project, "--no-secret")
    assert_error(result, "could not add itself to .devcontainer.json safely (the edit lost a comment)", hint="by hand")
    assert (project / ".devcontainer.json").read_text() == '{"image": "debian:12"} // keep\n'


def test_the_file_keeps_its_permissions_and_a_symlink_is_written_through(project: Path, tmp_path: Path) -> None:
    dotfiles = tmp_path / "dotfiles" / "devcontainer.json"
    dotfiles.parent.mkdir()
    dotfiles.write_text('{"image": "debian:12"}\n')
    dotfiles.chmod(0o640)
    (project / ".devcontainer.json").symlink_to(dotfiles)

    assert run_init(project, "--no-secret").ok

    assert (project / ".devcontainer.json").is_symlink()
    assert FEATURE_ID in json5.loads(dotfiles.read_text())["features"]
    assert dotfiles.stat().st_mode & 0o777 == 0o640


def test_a_token_left_in_the_feature_s_options_is_warned_about(project: Path) -> None:
    token = "eyJhbGciOiJFZERTQSJ9.eyJzcCI6MX0.c2ln"
    (project / ".devcontainer.json").write_text(json.dumps({"features": {FEATURE_ID: {"token": token}}}))
    result = run_init(project, "--no-secret")
    assert result.ok
    assert 'holds a Space token in the Feature\'s "token" option' in result.err
    assert token not in result.out + result.err
