#!/usr/bin/env bash
# npm tools the tests drive for real, installed into .venv/npm (ignored by git, like .venv):
# the Dev Container CLI, which packages devcontainer-feature/ as `devcontainer features package`.
# tests/install find it at .venv/npm/node_modules/.bin/devcontainer.
set -euo pipefail
cd "$(dirname "$0")/.."

DEVCONTAINER_CLI="@devcontainers/cli@0.89.0"
prefix=.venv/npm
if [ -x "$prefix/node_modules/.bin/devcontainer" ] && [ -f "$prefix/.installed-${DEVCONTAINER_CLI//[^a-z0-9.]/_}" ]; then
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "npm is missing: install Node.js 18+ (Debian: apt-get install nodejs npm) for the Devcontainer Feature tests." >&2
    exit 0  # the tests that need it skip locally and fail under CI=true
fi
echo "== installing $DEVCONTAINER_CLI into $prefix"
mkdir -p "$prefix"
npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "$DEVCONTAINER_CLI" </dev/null
touch "$prefix/.installed-${DEVCONTAINER_CLI//[^a-z0-9.]/_}"
