#!/usr/bin/env bash
# The whole test suite on a fresh machine: system tools, a virtualenv, ruff, mypy, pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -k bootstrap).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/system-deps.sh

scripts/venv.sh '.[broker,test]'
VENV=.venv/bin

echo "== ruff"
"$VENV/ruff" check .
echo "== mypy"
"$VENV/mypy"
echo "== pytest"
"$VENV/pytest" "$@"
