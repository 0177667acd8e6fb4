#!/usr/bin/env bash
# Debian packages the tests drive for real. Installs what is missing when run as root (as CI
# does); otherwise says what to install.
set -euo pipefail
"$(dirname "$0")/node-tools.sh"  # npm's Dev Container CLI, into .venv/npm

packages=(openssh-client openssh-server debootstrap shellcheck chromium)
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "Missing Debian packages: ${missing[*]}" >&2
    echo "Install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "== installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
