#!/usr/bin/env bash
# Run the broker on this machine: SQLite and signing keys in ./.pair-broker, http://127.0.0.1:8000.
# The first start creates an admin and prints how to log in. Flags go to `pair-broker serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh '.[broker]'
export PAIR_BROKER_DATA_DIR="${PAIR_BROKER_DATA_DIR:-$PWD/.pair-broker}"
exec .venv/bin/pair-broker serve "$@"
