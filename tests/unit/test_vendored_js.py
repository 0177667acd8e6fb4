"""The browser libraries the broker serves itself (scripts/vendor-js.sh): present, unmodified
since they were vendored, licensed, and pinned to the versions the script names."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENDOR = REPO / "broker" / "web" / "static" / "vendor" / "xterm"
SCRIPT = REPO / "scripts" / "vendor-js.sh"


def versions() -> dict[str, dict[str, object]]:
    loaded: dict[str, dict[str, object]] = json.loads((VENDOR / "VERSIONS.json").read_text())
    return loaded


def test_every_vendored_file_is_recorded_and_matches_its_digest() -> None:
    recorded: dict[str, str] = {}
    for package in versions().values():
        files = package["files"]
        assert isinstance(files, dict)
        recorded.update(files)
    on_disk = {path.name for path in VENDOR.iterdir()} - {"VERSIONS.json"}
    assert on_disk == set(recorded)  # nothing unrecorded is served, nothing recorded is missing
    for name, digest in recorded.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, f"{name} changed since vendoring"


def test_each_package_ships_its_licence() -> None:
    for name, package in versions().items():
        files = package["files"]
        assert isinstance(files, dict)
        licences = [f for f in files if f.startswith("LICENSE")]
        assert len(licences) == 1, name
        text = (VENDOR / licences[0]).read_text()
        assert package["license"] == "MIT"
        assert "Permission is hereby granted, free of charge" in text  # the MIT licence's grant
        assert "The xterm.js authors" in text


def test_the_pins_in_the_script_are_the_vendored_versions() -> None:
    script = SCRIPT.read_text()
    pins = dict(re.findall(r"^(?:XTERM|FIT)=(@xterm/[a-z-]+)@(\S+)$", script, re.MULTILINE))
    integrities = re.findall(r"^(?:XTERM|FIT)_INTEGRITY=(sha512-\S+)$", script, re.MULTILINE)
    assert pins == {name: package["version"] for name, package in versions().items()}
    assert integrities == [package["integrity"] for package in versions().values()]
    assert pins["@xterm/xterm"].startswith("6.")
