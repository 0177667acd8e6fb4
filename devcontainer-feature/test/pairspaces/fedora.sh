#!/bin/bash
# Scenario from scenarios.json: the default checks on another base image.
set -e
exec bash "$(dirname "$0")/test.sh"
