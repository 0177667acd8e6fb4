#!/usr/bin/env bash
# Create .venv if needed and install the project (editable) with the given extras. Re-installs
# only when pyproject.toml changed, so repeated runs are quick.
set -euo pipefail
cd "$(dirname "$0")/.."
spec="${1:-.[broker]}"

# pyenv's shim costs ~100 ms per start; prefer a real interpreter for the venv.
python="${PYTHON:-$(command -v python3)}"
if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv"
    "$python" -m venv .venv
fi
stamp=".venv/.installed-$(echo "$spec" | tr -c 'a-z0-9' '_')"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "== installing $spec into .venv"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec"
    touch "$stamp"
fi
