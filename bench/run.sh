#!/usr/bin/env bash
# `make bench`: the tools the suite drives (wrk, ssh, sshd, scp, PostgreSQL), the project's virtualenv with the
# broker and test extras (supervisord, the test fixtures), then the suite. Arguments go to
# bench/run.py (--quick, --only NAME, --no-docs, --keep).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/apt-ensure.sh wrk openssh-client openssh-server postgresql
if [ "$(id -u)" -ne 0 ]; then
    echo "The SSH benchmarks start sshd in a private mount namespace (unshare -m): run as root." >&2
    exit 1
fi

scripts/venv.sh '.[broker,test]'
exec .venv/bin/python -m bench.run "$@"
