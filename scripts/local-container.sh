#!/bin/sh
# A real Debian root as a local "container" that becomes a Space, on a machine without Docker:
#
#   sudo scripts/local-container.sh --name demo --key-file demo.key   # Ctrl-C stops and removes it
#
# It installs pair with install.sh from the broker the Space key names, starts supervisord and
# bootstraps with the key (CODESPACE_NAME=NAME), as a Codespace with pair's Feature and the
# PAIR_SPACE_KEY secret does. Needs root, debootstrap, unshare and nsenter (util-linux), and this
# checkout's .venv (`make run` or `make test` makes it). Ctrl-C or SIGTERM, at any point, ends every
# process in the root, unmounts and removes it. The root is built once with debootstrap
# (~1 minute) and cached in /var/cache/pair-tests, as the tests do (tests/install/debian.py).
set -eu
root="$(cd -P "$(dirname "$0")/.." && pwd -P)"
python="$root/.venv/bin/python"
if [ ! -x "$python" ]; then
    echo "error: $python is missing." >&2
    echo "hint: Run \`make run\` (or scripts/venv.sh '.[broker,test]') in $root first." >&2
    exit 1
fi
# tests/install/debian.py is test support: its imports' deprecation notes are not for this script's user.
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" PYTHONWARNINGS=ignore exec "$python" -m tests.install.local_container "$@"
