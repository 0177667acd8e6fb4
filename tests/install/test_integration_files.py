"""The container-integration files: the Devcontainer Feature and the Devfile validate against their
published schemas with a real validator, the Feature packages with the real Dev Container CLI
(its installer byte-identical to install.sh), and every shell script passes shellcheck."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.install.conftest import INSTALL_SH, REPO
from tests.support.tools import need_tool

SCHEMAS = Path(__file__).parent / "schemas"  # copies of the published schemas (README there)
FEATURE = REPO / "devcontainer-feature" / "src" / "pairspaces"
DEVFILE = REPO / "devfiles" / "devfile.yaml"
DEVCONTAINER_CLI = Path(sys.executable).parent.parent / "npm" / "node_modules" / ".bin" / "devcontainer"
SKIP_DIRS = {".git", ".venv", "node_modules", "build", "dist", ".mypy_cache", ".ruff_cache", ".pytest_cache"}


def schema(name: str) -> Path:
    return SCHEMAS / name


def check_jsonschema(*args: str) -> subprocess.CompletedProcess[str]:
    tool = Path(sys.executable).parent / "check-jsonschema"
    if not tool.exists():
        tool = Path(need_tool("check-jsonschema"))
    return subprocess.run([str(tool), *args], capture_output=True, text=True, timeout=120, check=False)


def devcontainer_cli() -> str:
    if DEVCONTAINER_CLI.exists():
        return str(DEVCONTAINER_CLI)
    message = f"{DEVCONTAINER_CLI} is missing (scripts/node-tools.sh installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def test_feature_metadata_is_valid_against_the_spec_schema() -> None:
    result = check_jsonschema(
        "--schemafile", str(schema("devContainerFeature.schema.json")), str(FEATURE / "devcontainer-feature.json")
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_feature_options_are_the_ones_install_sh_reads() -> None:
    meta = json.loads((FEATURE / "devcontainer-feature.json").read_text())
    assert meta["id"] == FEATURE.name == "pairspaces"
    assert {k: v["default"] for k, v in meta["options"].items()} == {
        "token": "",
        "spaceKey": "",
        "sshPort": "2222",
        "brokerUrl": "",
        "package": "",
    }
    script = INSTALL_SH.read_text()
    for option in meta["options"]:  # a Feature option arrives as its name upper-cased
        assert f'{option.upper()}="${{{option.upper()}:-' in script, option
    # Nothing that makes the CLI reach a registry (an installsAfter ghcr.io id does).
    assert not any("/" in feature for feature in meta.get("installsAfter", []))
    assert "dependsOn" not in meta


def test_feature_installer_is_a_real_copy_of_the_top_level_install_sh() -> None:
    """One source, install.sh; the Feature holds a copy because `devcontainer features package`
    refuses a symlink ("missing an install.sh")."""
    copy = FEATURE / "install.sh"
    assert not copy.is_symlink() and copy.is_file()
    assert copy.stat().st_mode & 0o111  # executable, as the CLI runs it
    assert copy.read_bytes() == INSTALL_SH.read_bytes(), "run scripts/sync-feature.sh to refresh the Feature's copy"


def test_sync_feature_refreshes_the_copy(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    (tmp_path / "devcontainer-feature" / "src" / "pairspaces").mkdir(parents=True)
    script = tmp_path / "scripts" / "sync-feature.sh"
    script.write_bytes((REPO / "scripts" / "sync-feature.sh").read_bytes())
    (tmp_path / "install.sh").write_text("#!/bin/sh\necho new\n")
    stale = tmp_path / "devcontainer-feature" / "src" / "pairspaces" / "install.sh"
    stale.write_text("old")
    subprocess.run(["sh", str(script)], check=True, timeout=30)
    assert stale.read_text() == "#!/bin/sh\necho new\n"
    assert stale.stat().st_mode & 0o777 == 0o755


def packaged(out: Path) -> tarfile.TarFile:
    return tarfile.open(out / "devcontainer-feature-pairspaces.tgz")


def test_feature_folder_packs_with_the_stock_devcontainer_cli(tmp_path: Path) -> None:
    """What the standard publish workflow runs, on the folder as it is in the repository."""
    out = tmp_path / "out"
    result = subprocess.run(
        [
            devcontainer_cli(),
            "features",
            "package",
            str(REPO / "devcontainer-feature" / "src"),
            "--output-folder",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Packaged 1 features" in result.stdout + result.stderr
    with packaged(out) as tar:
        member = tar.getmember("./install.sh")
        assert member.isfile() and member.mode & 0o111  # a real, executable file, not a link
        extracted = tar.extractfile(member)
        assert extracted is not None
        assert extracted.read() == INSTALL_SH.read_bytes()
        meta = tar.extractfile("./devcontainer-feature.json")
        assert meta is not None
        assert json.loads(meta.read()) == json.loads((FEATURE / "devcontainer-feature.json").read_text())
    collection = json.loads((out / "devcontainer-collection.json").read_text())
    assert [f["id"] for f in collection["features"]] == ["pairspaces"]


def test_package_feature_script_packs_and_refuses_a_stale_copy(tmp_path: Path) -> None:
    env = {**os.environ, "DEVCONTAINER": devcontainer_cli()}
    result = subprocess.run(
        [str(REPO / "scripts" / "package-feature.sh"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    with packaged(tmp_path / "out") as tar:
        assert tar.getmember("./install.sh").isfile()
    # A copy of the repository whose Feature installer drifted: refused before packaging.
    fake = tmp_path / "repo"
    (fake / "scripts").mkdir(parents=True)
    (fake / "scripts" / "package-feature.sh").write_bytes((REPO / "scripts" / "package-feature.sh").read_bytes())
    (fake / "devcontainer-feature" / "src" / "pairspaces").mkdir(parents=True)
    (fake / "install.sh").write_text("#!/bin/sh\n")
    (fake / "devcontainer-feature" / "src" / "pairspaces" / "install.sh").write_text("#!/bin/sh\n# drifted\n")
    refused = subprocess.run(
        ["bash", str(fake / "scripts" / "package-feature.sh"), str(tmp_path / "out2")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert refused.returncode == 1
    assert "differs from install.sh" in refused.stderr and "scripts/sync-feature.sh" in refused.stderr
    assert not (tmp_path / "out2").exists()


def test_feature_tests_cover_every_scenario() -> None:
    tests = REPO / "devcontainer-feature" / "test" / "pairspaces"
    scenarios = json.loads((tests / "scenarios.json").read_text())
    for name, scenario in scenarios.items():
        assert (tests / f"{name}.sh").exists(), name
        assert set(scenario["features"]) == {"pairspaces"}
    assert (tests / "test.sh").exists()


def test_devfile_is_valid_against_the_devfile_2_2_schema() -> None:
    result = check_jsonschema(
        "--regex-variant", "python", "--schemafile", str(schema("devfile-2.2.0.schema.json")), str(DEVFILE)
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_devfile_keeps_the_token_out_of_every_command_line() -> None:
    text = DEVFILE.read_text()
    assert "`" not in text  # nothing a shell would execute
    assert "PAIR_SPACE_TOKEN" in text
    bootstrap = text[text.index("- id: bootstrap") :]
    assert "/opt/pair/pair spaces bootstrap\n" in bootstrap  # no token argument: it reads PAIR_SPACE_TOKEN


def shell_scripts() -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(REPO):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                continue  # its target is checked where it lives
            if name.endswith(".sh"):
                found.append(path)
            elif path.suffix == "" and path.stat().st_size < 1_000_000:
                with path.open("rb") as f:
                    head = f.read(64)
                if head.startswith(b"#!") and (b"sh\n" in head.split(b"\n")[0] + b"\n"):
                    found.append(path)
    return sorted(found)


def test_every_shell_script_passes_shellcheck() -> None:
    shellcheck = need_tool("shellcheck")
    scripts = shell_scripts()
    assert INSTALL_SH in scripts and REPO / "scripts" / "package-feature.sh" in scripts
    result = subprocess.run(
        [shellcheck, "--external-sources", *map(str, scripts)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_install_sh_is_posix_sh() -> None:
    assert INSTALL_SH.read_text().startswith("#!/bin/sh\n")
    shellcheck = need_tool("shellcheck")
    result = subprocess.run(
        [shellcheck, "--shell=sh", "--severity=style", str(INSTALL_SH)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout
