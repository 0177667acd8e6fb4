#!/usr/bin/env bash
# Debian packages the tests drive for real (installed when run as root, as CI does; otherwise
# listed), and npm's Dev Container CLI into .venv/npm.
set -euo pipefail
here="$(dirname "$0")"
"$here/node-tools.sh"
"$here/apt-ensure.sh" openssh-client openssh-server debootstrap shellcheck chromium nginx openssl postgresql
