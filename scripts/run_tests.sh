#!/usr/bin/env bash
# Lint, type-check and test, as CI does (without starting services).
set -euo pipefail
cd "$(dirname "$0")/.."
uv run ruff check .
uv run ruff format --check .
uv run mypy
uv run pytest "$@"
