#!/bin/sh
# Scenario from scenarios.json: Alpine has no bash until the test installs it; then the default checks.
set -e
command -v bash >/dev/null 2>&1 || apk add --no-cache bash >/dev/null
exec bash "$(dirname "$0")/test.sh"
