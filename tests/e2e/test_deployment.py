"""The deployment files: Dockerfile, compose files, scripts, and how they fit monitoring/.

Nothing here needs a Docker daemon. The compose files are validated by
`docker compose config` (or the standalone `docker-compose`), the scripts by
shellcheck. Without the tool these checks skip with the reason locally, and fail
in CI (`CI=true`), where `.ci/run` installs both.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tests import servers
from tests.prometheus import MONITORING

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "docker" / "Dockerfile"
COMPOSE = REPO / "docker" / "docker-compose.yml"
MONITORING_COMPOSE = MONITORING / "docker-compose.monitoring.yml"
SCRIPTS = sorted((REPO / "scripts").glob("*.sh"))
SECRETS = {
    "DEVTEAM_JWT_SECRET": "a-jwt-secret-for-the-compose-check-0123456789",
    "POSTGRES_PASSWORD": "postgres-password",
    "GRAFANA_ADMIN_PASSWORD": "grafana-password",
}


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def compose_command() -> list[str]:
    """Docker Compose v2 (the docker plugin), else the standalone docker-compose.

    Skips (locally) or fails (in CI) when neither is installed.
    """
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) is None:
            continue
        done = subprocess.run([*command, "version"], capture_output=True, timeout=30)
        if done.returncode == 0:
            return command
    servers.unavailable(
        "Docker Compose is not installed (neither `docker compose` nor docker-compose)"
    )


def bash(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", *map(str, args)], capture_output=True, text=True, timeout=60, env=env, cwd=REPO
    )


# -- scripts --------------------------------------------------------------------------


@pytest.mark.parametrize("script", [*SCRIPTS, REPO / ".ci" / "run"], ids=lambda p: p.name)
def test_scripts_parse_and_are_executable(script: Path) -> None:
    checked = bash("-n", script)
    assert checked.returncode == 0, checked.stderr
    assert script.stat().st_mode & stat.S_IXUSR, f"{script} is not executable"
    assert "set -euo pipefail" in script.read_text()


def test_shellcheck_finds_nothing() -> None:
    if shutil.which("shellcheck") is None:
        servers.unavailable("shellcheck is not installed (apt-get install shellcheck)")
    checked = subprocess.run(
        ["shellcheck", *map(str, SCRIPTS)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout
    checked = subprocess.run(
        ["shellcheck", "--severity=warning", str(REPO / ".ci" / "run")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout


def test_deploy_explains_itself_and_refuses_wrong_options() -> None:
    helped = bash("scripts/deploy.sh", "--help")
    assert helped.returncode == 0
    assert helped.stdout.startswith("Usage: scripts/deploy.sh")
    assert bash("scripts/deploy.sh", "--workers", "many").returncode == 2
    refused = bash("scripts/deploy.sh", "--frobnicate")
    assert refused.returncode == 2 and "unknown option: --frobnicate" in refused.stderr


def test_deploy_writes_secrets_then_migrates_before_starting_the_service(tmp_path: Path) -> None:
    env_file = tmp_path / "deploy" / ".env"
    done = bash("scripts/deploy.sh", "--dry-run", "--env-file", env_file, "--workers", "3")
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    lines = env_file.read_text().splitlines()
    values = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert set(values) == {
        "DEVTEAM_JWT_SECRET",
        "DEVTEAM_METRICS_TOKEN",
        "POSTGRES_PASSWORD",
        "GRAFANA_ADMIN_PASSWORD",
    }
    assert all(re.fullmatch(r"[0-9a-f]{64}", value) for value in values.values())
    commands = [line[2:] for line in done.stdout.splitlines() if line.startswith("+ ")]
    prefix = f"-p devteam -f docker/docker-compose.yml --env-file {env_file} "
    assert [c.split(prefix, 1)[1] for c in commands] == [
        "config --quiet",
        "build",
        "up -d postgres redis",
        "run --rm migrate",
        "up -d --no-build --scale worker=3 api worker prometheus grafana",
    ]
    # An existing env file is kept as it is.
    before = env_file.read_text()
    assert bash("scripts/deploy.sh", "--dry-run", "--env-file", env_file).returncode == 0
    assert env_file.read_text() == before


# -- the image ------------------------------------------------------------------------


def test_the_dockerfile_builds_in_stages_and_runs_as_a_user_with_a_health_check() -> None:
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM \S+ AS (\w+)", text, flags=re.MULTILINE)
    assert stages == ["build", "runtime"]
    assert "uv sync --frozen --no-default-groups --group mcp-servers" in text
    assert re.search(r"^USER devteam$", text, flags=re.MULTILINE)
    assert "COPY --from=build /app/.venv /app/.venv" in text
    assert re.search(r'^CMD \["devteam", "serve"\]$', text, flags=re.MULTILINE)
    health = re.search(r'HEALTHCHECK .*\n\s+CMD \["python", "-c", "(.+)"\]', text)
    assert health is not None
    compile(health[1].replace('\\"', '"'), "HEALTHCHECK", "exec")
    assert "/health/live" in health[1]


def test_the_build_context_has_what_the_image_copies_and_no_secrets() -> None:
    ignored = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert {".env", ".git", ".venv", "docker/.env"} <= set(ignored)
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE.read_text(), flags=re.MULTILINE)
    for source in " ".join(copied).split():
        assert (REPO / source).exists(), source
        assert source not in ignored, source


def test_the_image_installs_the_mcp_servers_group_without_the_dev_tools() -> None:
    exported = subprocess.run(
        ["uv", "export", "--frozen", "--no-default-groups", "--group", "mcp-servers"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert exported.returncode == 0, exported.stderr
    packages = set(re.findall(r"^([a-z0-9_.-]+)==", exported.stdout, flags=re.MULTILINE))
    assert {"mcp-server-git", "fastapi", "uvicorn"} <= packages
    assert not {"pytest", "ruff", "mypy"} & packages


# -- compose files and monitoring/ ----------------------------------------------------


def test_the_stack_is_wired_as_prometheus_and_grafana_expect() -> None:
    services = load(COMPOSE)["services"]
    assert {"api", "worker", "postgres", "redis", "prometheus", "grafana", "migrate"} <= set(
        services
    )
    assert services["api"]["command"] == ["devteam", "serve", "--no-executors"]
    assert services["worker"]["command"] == ["devteam", "worker", "--port", "9101"]
    # Prometheus finds the replicas by their service names, on their ports.
    prometheus_config = load(MONITORING / "prometheus" / "prometheus.yml")
    discovered = {
        job["job_name"]: (job["dns_sd_configs"][0]["names"], job["dns_sd_configs"][0]["port"])
        for job in prometheus_config["scrape_configs"]
        if "dns_sd_configs" in job
    }
    assert discovered == {"devteam-api": (["api"], 8000), "devteam-worker": (["worker"], 9101)}
    # Grafana's datasource is the prometheus service; the dashboards are where the
    # provider reads them.
    datasource = load(MONITORING / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    provider = load(MONITORING / "grafana" / "provisioning" / "dashboards" / "devteam.yml")
    dashboards_path = provider["providers"][0]["options"]["path"]
    for compose_file, prefix in ((COMPOSE, "../monitoring/"), (MONITORING_COMPOSE, "./")):
        stack = load(compose_file)["services"]
        mounts = {m.split(":")[1]: m.split(":")[0] for m in stack["grafana"]["volumes"]}
        assert mounts[dashboards_path] == f"{prefix}grafana/dashboards"
        assert mounts["/etc/grafana/provisioning"] == f"{prefix}grafana/provisioning"
        mounts = {m.split(":")[1]: m.split(":")[0] for m in stack["prometheus"]["volumes"]}
        assert mounts["/etc/prometheus/alerts.yml"] == f"{prefix}prometheus/alerts.yml"
        assert "/prometheus/metrics_token" in " ".join(stack["prometheus"]["entrypoint"])
    # The worker's health check is code that compiles.
    test = services["worker"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"] and "9101/health/live" in test[3]
    compile(test[3], "healthcheck", "exec")


@pytest.mark.parametrize("compose_file", [COMPOSE, MONITORING_COMPOSE], ids=lambda p: p.name)
def test_compose_validates_the_file(compose_file: Path) -> None:
    command = compose_command()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEVTEAM_", "POSTGRES_"))}
    checked = subprocess.run(
        [*command, "-p", "devteam", "-f", str(compose_file), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, **SECRETS},
    )
    assert checked.returncode == 0, checked.stderr


def test_compose_refuses_the_stack_without_its_secrets() -> None:
    command = compose_command()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEVTEAM_", "POSTGRES_"))}
    env.update(SECRETS)
    del env["DEVTEAM_JWT_SECRET"]
    checked = subprocess.run(
        [*command, "-p", "devteam", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert checked.returncode != 0
    assert "DEVTEAM_JWT_SECRET" in checked.stderr


async def test_the_image_health_check_passes_on_a_live_service_and_fails_without_one(
    make_live_server: Callable[..., Any],
) -> None:
    health = re.search(r'CMD \["python", "-c", "(.+)"\]', DOCKERFILE.read_text())
    assert health is not None
    code = health[1].replace('\\"', '"')

    async def check(port: int) -> int:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, env={**os.environ, "DEVTEAM_PORT": str(port)}
        )
        return await asyncio.wait_for(process.wait(), 30)

    async with make_live_server() as server:
        assert await check(server.port) == 0
    assert await check(server.port) != 0


def test_serve_runs_one_process_so_its_metrics_are_the_whole_truth() -> None:
    """No --workers: several uvicorn workers would each serve only their own metrics."""
    from devteam.cli import app

    helped = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert helped.exit_code == 0, helped.output
    assert "--port" in helped.output
    assert "--workers" not in helped.output
