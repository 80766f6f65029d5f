#!/usr/bin/env bash
# make test: everything the test suite needs, then the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_postgres
ensure_redis
ensure_chromium

export DEBUG=true
export DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/dumont}"
export REDIS_URL="${TEST_REDIS_URL:-redis://127.0.0.1:6379/14}"
export DUMONT_VAR_DIR="$PWD/var/test"
# devcloud machines get the agent's dependencies uploaded (wheels cached in var/test/agent-dist).
export DUMONT_AGENT_UPLOAD_DEPENDENCIES=true
mkdir -p "$DUMONT_VAR_DIR"

log "checking the import contracts (pyproject.toml, [tool.importlinter])"
.venv/bin/lint-imports --no-cache

log "running the test suite"
exec .venv/bin/python -m pytest "$@"
