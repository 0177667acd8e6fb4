#!/usr/bin/env bash
# Package the Devcontainer Feature for publishing. Its install.sh is a symlink to the top-level
# install.sh (one installer, no copy to drift); this copies the Feature into a build directory with
# symlinks dereferenced, then runs `devcontainer features package` there.
#
#   scripts/package-feature.sh [OUT_DIR]          # default build/feature; the tarball lands in OUT_DIR/out
#   scripts/package-feature.sh OUT_DIR test ARGS   # also `devcontainer features test` (needs Docker)
#
# Publish with: devcontainer features publish OUT_DIR/src --namespace pairspaces/devcontainers
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

rm -rf "$out"
mkdir -p "$out/src" "$out/test"
cp -RL "$root/devcontainer-feature/src/." "$out/src/"   # -L: the real install.sh, not a link to it
cp -R "$root/devcontainer-feature/test/." "$out/test/"
if find "$out/src" -type l | grep -q .; then
    echo "error: symlinks left in $out/src" >&2
    exit 1
fi
"$devcontainer" features package "$out/src" --output-folder "$out/out" --force-clean-output-folder --log-level info
if [ "$mode" = test ]; then
    shift 2
    cd "$out"
    "$devcontainer" features test --project-folder "$out" --features pairspaces "$@"
fi
