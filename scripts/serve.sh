#!/usr/bin/env bash
# Run the broker on this machine: SQLite and signing keys in ./.pair-broker, http://127.0.0.1:8000.
# The first start creates an admin and prints how to log in. Flags go to `pair-broker serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh '.[broker]'
export PAIR_BROKER_DATA_DIR="${PAIR_BROKER_DATA_DIR:-$PWD/.pair-broker}"
# Shared ports at http://PORT--SPACE--OWNER.localhost:8000: browsers and curl resolve *.localhost
# to loopback, so no DNS is needed. PAIR_BROKER_APPS_DOMAIN= (empty) turns port sharing off.
export PAIR_BROKER_APPS_DOMAIN="${PAIR_BROKER_APPS_DOMAIN-*.localhost}"
exec .venv/bin/pair-broker serve "$@"
