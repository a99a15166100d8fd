#!/usr/bin/env bash
# The PostgreSQL that the ignored rps-serve tests (GET /api/history, the dashboard in headless
# Chromium) need: the tests' shared server, tests/servers/postgres.sh (same arguments; exports
# RPS_TEST_DATABASE_URL). Each test creates a database of its own there, with the `candles` and
# `predictions` tables of crates/rps-stream/migrations/ (0001 to 0003).
#
#   servers.sh start VENV_PYTHON STATE_DIR   # prints `export RPS_TEST_DATABASE_URL=…` on stdout
#   servers.sh stop STATE_DIR
set -euo pipefail
exec bash "$(dirname "$0")/../../../tests/servers/postgres.sh" "$@"
