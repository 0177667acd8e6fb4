#!/usr/bin/env bash
# Package the Devcontainer Feature for publishing: `devcontainer features package` on
# devcontainer-feature/src, exactly what the standard publish workflow runs. The Feature's install.sh
# is a byte-identical copy of the top-level install.sh (a real file: the CLI refuses a symlink);
# this checks that first, and scripts/sync-feature.sh refreshes the copy.
#
#   scripts/package-feature.sh [OUT_DIR]          # default build/feature; the tarball lands in OUT_DIR
#   scripts/package-feature.sh OUT_DIR test ARGS   # also `devcontainer features test` (needs Docker)
#
# Publish with: devcontainer features publish devcontainer-feature/src --namespace pairspaces/devcontainers
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/build/feature}"
mode="${2:-package}"
devcontainer="${DEVCONTAINER:-$root/.venv/npm/node_modules/.bin/devcontainer}"
if [ ! -x "$devcontainer" ]; then
    devcontainer="$(command -v devcontainer || true)"
fi
if [ -z "$devcontainer" ]; then
    echo "error: no devcontainer CLI; run scripts/node-tools.sh (installs it into .venv/npm)" >&2
    exit 1
fi
if ! cmp -s "$root/install.sh" "$root/devcontainer-feature/src/pairspaces/install.sh"; then
    echo "error: devcontainer-feature/src/pairspaces/install.sh differs from install.sh" >&2
    echo "hint: run scripts/sync-feature.sh" >&2
    exit 1
fi

"$devcontainer" features package "$root/devcontainer-feature/src" --output-folder "$out" --force-clean-output-folder --log-level info
if [ "$mode" = test ]; then
    shift 2
    cd "$root/devcontainer-feature"
    "$devcontainer" features test --project-folder "$root/devcontainer-feature" --features pairspaces "$@"
fi
