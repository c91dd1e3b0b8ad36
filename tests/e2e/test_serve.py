"""`devteam serve` and `devteam migrate` as a user runs them."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from devteam.storage.migrate import head_revision
from tests.processes import clean_env, devteam, free_port

pytestmark = pytest.mark.slow


def test_serve_answers_ready_and_creates_its_database(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        devteam("serve", "--port", str(port)),
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60  # start-up on a busy machine
        response = None
        while time.monotonic() < deadline:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read().decode()  # type: ignore[union-attr]
                time.sleep(0.1)
        assert response is not None, "the service did not come up"
        assert response.status_code == 200
        assert response.json()["checks"] == {"database": "ok", "broker": "ok"}
        assert (tmp_path / "devteam.db").is_file()
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=20)[0].decode()
    # uvicorn re-raises the signal once shut down, so the exit is by SIGTERM.
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "devteam stopped" in output


def test_a_bad_config_value_stops_start_up_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "team_leader.yaml").write_text("concurrency:\n  global: 0\n")
    result = subprocess.run(
        devteam("serve", "--port", str(free_port())),
        cwd=tmp_path,
        env=clean_env(DEVTEAM_CONFIG_DIR=str(config)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "team_leader.yaml: concurrency.global: Input should be greater than 0" in result.stderr
    assert not (tmp_path / "devteam.db").exists()


def test_a_bad_environment_value_stops_start_up_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        devteam("serve"),
        cwd=tmp_path,
        env=clean_env(DEVTEAM_PORT="http"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "devteam: environment: DEVTEAM_PORT: Input should be a valid integer, "
        "unable to parse string as an integer (got 'http')"
    )


def test_migrate_creates_the_schema(tmp_path: Path) -> None:
    result = subprocess.run(
        devteam("migrate"),
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"database at revision {head_revision()}" in result.stdout
    assert (tmp_path / "devteam.db").is_file()
