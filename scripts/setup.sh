#!/usr/bin/env bash
# Prepare a development machine: uv, the locked environment, the database schema.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v uv >/dev/null 2>&1; then
  echo "installing uv"
  python3 -m pip install --user --quiet uv || curl -LsSf https://astral.sh/uv/install.sh | sh
  export PATH="$HOME/.local/bin:$PATH"
fi
uv sync --frozen
[ -f .env ] || { cp .env.example .env; echo "wrote .env from .env.example"; }
uv run devteam migrate
echo "ready: uv run devteam serve"
