#!/usr/bin/env bash
# `make bench`: the tools the suite drives (wrk, ssh, sshd, scp), the project's virtualenv with the
# broker and test extras (supervisord, the test fixtures), then the suite. Arguments go to
# bench/run.py (--quick, --only NAME, --no-docs, --keep).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(wrk openssh-client openssh-server)
missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "Missing Debian packages: ${missing[*]}" >&2
        echo "Install them with: sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    echo "== installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "The SSH benchmarks start sshd in a private mount namespace (unshare -m): run as root." >&2
    exit 1
fi

scripts/venv.sh '.[broker,test]'
exec .venv/bin/python -m bench.run "$@"
