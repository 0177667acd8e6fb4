#!/bin/sh
# Copy the top-level install.sh (the one source) into the Devcontainer Feature, which must hold a
# real file: `devcontainer features package` refuses a symlink. tests/install checks they are equal.
set -eu
root="$(cd "$(dirname "$0")/.." && pwd)"
cp "$root/install.sh" "$root/devcontainer-feature/src/pairspaces/install.sh"
chmod 755 "$root/devcontainer-feature/src/pairspaces/install.sh"
