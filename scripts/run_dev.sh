#!/usr/bin/env bash
# Start DevTeam for development: embedded SQLite and in-process broker, debug logs.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEVTEAM_LOG_LEVEL="${DEVTEAM_LOG_LEVEL:-DEBUG}"
exec uv run devteam serve "$@"
