"""A first run of an installed `devteam`: version, shipped defaults, quiet commands, refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from devteam.settings.defaults import default_folder
from tests.processes import REPO, clean_env, devteam

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery staple"


def run(
    cwd: Path, *args: str, stdin: str = "", drop_config: bool = True, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = clean_env(**env)
    if drop_config and "DEVTEAM_CONFIG_DIR" not in env:
        environment.pop("DEVTEAM_CONFIG_DIR")
    return subprocess.run(
        devteam(*args),
        cwd=cwd,
        env=environment,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_version() -> None:
    from devteam import __version__

    result = run(REPO, "--version")
    assert (result.returncode, result.stdout) == (0, f"devteam {__version__}\n")


def test_outside_a_checkout_the_shipped_defaults_serve(tmp_path: Path) -> None:
    """No config/ nor system_prompts/ where it runs: the packaged defaults are used."""
    created = run(
        tmp_path,
        "users", "create", "--username", "admin", "--role", "admin", "--password-stdin",
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert created.stderr == ""  # no migration or audit lines unless asked
    verbose = run(tmp_path, "-v", "users", "list")
    assert verbose.returncode == 0, verbose.stderr
    assert "admin" in verbose.stdout
    assert default_folder("config") is not None
    assert (default_folder("system_prompts") or Path()).joinpath("team_leader.md").is_file()


def test_verbose_shows_migration_lines(tmp_path: Path) -> None:
    quiet = run(tmp_path, "migrate")
    assert (quiet.returncode, quiet.stderr) == (0, ""), quiet.stderr
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    verbose = run(fresh, "-v", "migrate")
    assert verbose.returncode == 0, verbose.stderr
    assert "Running upgrade" in verbose.stderr


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        (
            "DEVTEAM_CONFIG_DIR",
            "devteam: DEVTEAM_CONFIG_DIR=confg: no such folder (it should hold team_leader.yaml)\n",
        ),
        (
            "DEVTEAM_PROMPTS_DIR",
            "devteam: DEVTEAM_PROMPTS_DIR=confg: no such folder (it should hold team_leader.md)\n",
        ),
    ],
    ids=["config", "prompts"],
)
def test_a_mistyped_folder_stops_start_up_with_one_line(
    tmp_path: Path, variable: str, message: str
) -> None:
    result = run(tmp_path, "serve", "--port", "1", **{variable: "confg"})
    assert (result.returncode, result.stderr) == (2, message)


def test_start_up_without_an_llm_does_not_import_the_llm_stack(tmp_path: Path) -> None:
    """No LLM configured: neither creating the app nor starting it loads pydantic_ai."""
    probe = (
        "import asyncio, sys\n"
        "from devteam.settings import load_settings, load_config\n"
        "settings = load_settings(jwt_secret='x' * 40)\n"
        "from devteam.app import create_app\n"
        "app = create_app(settings, load_config(settings.config_dir))\n"
        "created = 'pydantic_ai' in sys.modules\n"
        "async def start_and_stop():\n"
        "    async with app.router.lifespan_context(app):\n"
        "        pass\n"
        "asyncio.run(start_and_stop())\n"
        "print(created, 'pydantic_ai' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "False False"
