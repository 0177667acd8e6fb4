#!/bin/bash
# Scenario from scenarios.json: options sshPort, token and brokerUrl reach the installer.
set -e

# shellcheck source=/dev/null
source dev-container-features-test-lib

token_is_private() { [ "$(stat -c %a /opt/pair/bootstrap.txt)" = 600 ]; }

check "sshd listens on the chosen port" grep -qx "Port 2200" /etc/ssh/pair_sshd_config
check "token kept for the first bootstrap" grep -qx "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJzcF90ZXN0In0.c2lnbmF0dXJl" /opt/pair/bootstrap.txt
check "token file is 0600" token_is_private
check "broker URL kept" grep -qx "https://pair.example.com" /opt/pair/broker-url

reportResults
