#!/usr/bin/env bash
# Deploy DevTeam with Docker Compose (docker/docker-compose.yml) on this host.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'EOF'
Usage: scripts/deploy.sh [options]

Build (or pull) the DevTeam image, apply the database migrations, start the API,
the workers, Postgres, Redis, Prometheus and Grafana with Docker Compose, and wait
until the API and every worker report healthy.

Options:
  --env-file FILE   Compose variables and secrets (default: docker/.env). Written
                    with fresh secrets (mode 600) when it does not exist.
  --pull            Pull DEVTEAM_IMAGE from its registry instead of building it.
  --workers N       Worker containers to run (default: 1).
  --timeout SECONDS How long to wait for health (default: 180).
  --dry-run         Print the commands instead of running them.
  -h, --help        Show this help.

Environment: DEVTEAM_IMAGE (default devteam:latest), COMPOSE_PROJECT_NAME
(default devteam). Set the LLM (DEVTEAM_LLM_MODEL and its key) in the env file.
EOF
}

env_file=docker/.env
pull=false
workers=1
timeout=180
dry_run=false
project="${COMPOSE_PROJECT_NAME:-devteam}"
compose_file=docker/docker-compose.yml

while [ $# -gt 0 ]; do
  case "$1" in
    --env-file) env_file="${2:?--env-file needs a file}"; shift 2 ;;
    --pull) pull=true; shift ;;
    --workers) workers="${2:?--workers needs a number}"; shift 2 ;;
    --timeout) timeout="${2:?--timeout needs seconds}"; shift 2 ;;
    --dry-run) dry_run=true; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "deploy.sh: unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$workers" in ''|*[!0-9]*) echo "deploy.sh: --workers takes a number" >&2; exit 2 ;; esac
case "$timeout" in ''|*[!0-9]*) echo "deploy.sh: --timeout takes seconds" >&2; exit 2 ;; esac

# Docker Compose v2 (the docker plugin), else the standalone docker-compose.
if docker compose version >/dev/null 2>&1; then
  compose_cmd=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose_cmd=(docker-compose)
elif [ "$dry_run" = true ]; then
  compose_cmd=(docker compose)
else
  echo "deploy.sh: Docker Compose is not installed (docker compose or docker-compose)" >&2
  exit 1
fi

run() {
  if [ "$dry_run" = true ]; then
    printf '+ %s\n' "$*"
  else
    "$@"
  fi
}

compose() {
  run "${compose_cmd[@]}" -p "$project" -f "$compose_file" --env-file "$env_file" "$@"
}

secret() {
  if command -v openssl >/dev/null 2>&1; then
    openssl rand -hex 32
  else
    python3 -c 'import secrets; print(secrets.token_hex(32))'
  fi
}

if [ ! -f "$env_file" ]; then
  echo "writing $env_file with new secrets"
  mkdir -p "$(dirname "$env_file")"
  (
    umask 077
    cat >"$env_file" <<EOF
# Written by scripts/deploy.sh. Keep it secret; it is read by docker compose.
DEVTEAM_JWT_SECRET=$(secret)
DEVTEAM_METRICS_TOKEN=$(secret)
POSTGRES_PASSWORD=$(secret)
GRAFANA_ADMIN_PASSWORD=$(secret)
# The LLM the agents use, e.g.:
# DEVTEAM_LLM_MODEL=anthropic:claude-sonnet-4-5
# ANTHROPIC_API_KEY=
EOF
  )
fi

# Fail early on a broken compose file or a missing variable.
compose config --quiet

if [ "$pull" = true ]; then
  compose pull
else
  compose build
fi

echo "starting Postgres and Redis, applying migrations"
compose up -d postgres redis
compose run --rm migrate

echo "starting the API ($workers worker(s)), Prometheus and Grafana"
compose up -d --no-build --scale "worker=$workers" api worker prometheus grafana

if [ "$dry_run" = true ]; then
  exit 0
fi

echo "waiting up to ${timeout}s for the API and the workers to be healthy"
deadline=$((SECONDS + timeout))
while :; do
  mapfile -t containers < <(compose ps -q api worker)
  unhealthy=0
  for container in "${containers[@]}"; do
    status=$(docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$container")
    [ "$status" = healthy ] || unhealthy=$((unhealthy + 1))
  done
  if [ "${#containers[@]}" -ge $((1 + workers)) ] && [ "$unhealthy" -eq 0 ]; then
    break
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "deploy.sh: not healthy after ${timeout}s; the logs:" >&2
    compose ps >&2
    compose logs --tail 50 api worker >&2
    exit 1
  fi
  sleep 2
done

address() { compose port "$1" "$2" | sed 's/.*:/http:\/\/127.0.0.1:/'; }
echo "DevTeam is up: $(address api 8000)"
echo "Grafana: $(address grafana 3000)  Prometheus: $(address prometheus 9090)"
echo "first admin: ${compose_cmd[*]} -p $project -f $compose_file --env-file $env_file exec api devteam users create --username admin --role admin"
