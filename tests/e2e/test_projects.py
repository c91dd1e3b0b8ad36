"""Projects over the API: clone from a real `git daemon`, refresh, remove, work on one."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devteam.app import create_app
from devteam.domain.enums import Role
from devteam.settings import Settings
from tests.auth import add_user, security_config
from tests.e2e.test_cli_client import Cli
from tests.live import LiveServer, serve
from tests.processes import free_port
from tests.sample_project import git, make_project
from tests.servers import unavailable

pytestmark = pytest.mark.slow


@pytest.fixture
def git_daemon(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`git daemon` on loopback serving `<tmp>/served/*`: (its git:// base URL, that folder)."""
    if shutil.which("git") is None or subprocess.run(
        ["git", "daemon", "--help"], capture_output=True, check=False
    ).returncode not in (0, 129):
        unavailable("git daemon is not installed")
    served = tmp_path / "served"
    make_project(served / "shop")
    port = free_port()
    daemon = subprocess.Popen(
        [
            "git", "daemon", "--export-all", f"--base-path={served}", f"--port={port}",
            "--listen=127.0.0.1", "--reuseaddr", str(served),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"git://127.0.0.1:{port}"
        for _ in range(100):  # the daemon offers no readiness signal but its port
            probe = subprocess.run(
                ["git", "ls-remote", f"{url}/shop"], capture_output=True, check=False
            )
            if probe.returncode == 0:
                break
            assert daemon.poll() is None, "git daemon stopped"
            subprocess.run(["sleep", "0.1"], check=False)
        yield url, served
    finally:
        daemon.terminate()
        daemon.wait(10)


@contextlib.asynccontextmanager
async def service(settings: Settings, **projects: Any) -> AsyncIterator[LiveServer]:
    """The service with its built-in agents and executors (the embedded default)."""
    config = security_config()
    if projects:
        config = config.model_copy(update={"projects": config.projects.model_copy(update=projects)})
    app = create_app(settings, config, executors=True)
    async with serve(app, settings) as server:
        yield server


async def until_settled(http: httpx.AsyncClient, name: str) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:
            project: dict[str, Any] = (await http.get(f"/api/v1/projects/{name}")).json()
            if project["state"] != "cloning":
                return project
            await asyncio.sleep(0.1)  # the clone's end is announced by its state alone


@pytest.mark.timeout(120)  # a clone, a task and several git commands on a busy machine
async def test_clone_refresh_work_on_and_remove(
    make_settings: Any, git_daemon: tuple[str, Path], tmp_path: Path
) -> None:
    url, served = git_daemon
    settings = make_settings()
    # A repository placed by hand, as the README described before projects could be added.
    make_project(settings.workspaces_root / "byhand")
    async with service(settings) as server:
        _, admin = await server.login_new_user(Role.ADMIN)
        _, developer = await server.login_new_user(Role.DEVELOPER)
        async with server.http(admin) as http, server.http(developer) as dev:
            added = await http.post(
                "/api/v1/projects", json={"name": "shop", "git_url": f"{url}/shop"}
            )
            ready = await until_settled(http, "shop")
            missing = await http.post(
                "/api/v1/projects", json={"name": "ghost", "git_url": f"{url}/nothing-here"}
            )
            failed = await until_settled(http, "ghost")
            listed = (await dev.get("/api/v1/projects")).json()
            refused_for_developer = await dev.post(
                "/api/v1/projects", json={"name": "other", "git_url": f"{url}/shop"}
            )
            again = await http.post(
                "/api/v1/projects", json={"name": "shop", "git_url": f"{url}/shop"}
            )

            # A new commit upstream reaches the clone on refresh.
            (served / "shop" / "NOTES.md").write_text("notes\n")
            git(served / "shop", "add", "NOTES.md")
            git(served / "shop", "commit", "-q", "-m", "Add notes")
            refreshed = await http.post("/api/v1/projects/shop/refresh")

            # A task on the cloned project: the codebase analyzer works without an LLM.
            task = (
                await dev.post(
                    "/api/v1/tasks",
                    json={
                        "task": "Describe the structure of the shop project",
                        "complexity": 1,
                        "agent_type": "codebase_analyzer",
                        "project_id": "shop",
                    },
                )
            ).json()
            busy = await http.delete("/api/v1/projects/shop")
            done = await server.finished(task["id"], timeout=40)
            removed = await http.delete("/api/v1/projects/shop")
            gone = await http.get("/api/v1/projects/shop")
            audit = (await http.get("/api/v1/audit", params={"limit": 100})).json()

    assert added.status_code == 202, added.text
    assert added.json()["state"] == "cloning"
    assert ready["state"] == "ready", ready
    assert ready["last_commit"]["subject"] and len(ready["last_commit"]["sha"]) == 40
    assert (settings.workspaces_root / "shop" / "app" / "main.py").is_file() or removed
    assert failed["state"] == "failed"
    assert failed["error"].startswith("clone failed: ")
    assert missing.status_code == 202
    assert [(p["name"], p["managed"]) for p in listed["items"]] == [
        ("byhand", False), ("ghost", True), ("shop", True),
    ]  # fmt: skip
    assert refused_for_developer.status_code == 403
    assert again.status_code == 409
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["last_commit"]["subject"] == "Add notes"
    assert refreshed.json()["error"] is None
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "conflict"
    assert done.status == "completed", done.error
    assert done.result is not None and done.result["output"]["total_files"] > 0
    assert removed.status_code == 204
    assert gone.status_code == 404
    assert not (settings.workspaces_root / "shop").exists()
    actions = {(e["action"], e["outcome"]) for e in audit["items"]}
    assert {
        ("project.add", "success"),
        ("project.refresh", "success"),
        ("project.remove", "failure"),
        ("project.remove", "success"),
    } <= actions


@pytest.mark.parametrize(
    ("git_url", "message"),
    [
        ("ext::sh -c touch% /tmp/pwned", "remote helper transports"),
        ("/srv/repos/shop", "local repositories are refused"),
        ("file:///srv/repos/shop", "local repositories are refused"),
        ("http://example.com/shop.git", "use a git://, https:// or ssh:// URL"),
        ("--upload-pack=touch /tmp/pwned", "must not start with '-'"),
    ],
    ids=["ext", "path", "file", "http", "option"],
)
async def test_refused_urls(make_live_server: Any, git_url: str, message: str) -> None:
    async with make_live_server() as server:
        _, admin = await server.login_new_user(Role.ADMIN)
        async with server.http(admin) as http:
            response = await http.post(
                "/api/v1/projects", json={"name": "shop", "git_url": git_url}
            )
    assert response.status_code == 422, response.text
    assert message in response.json()["error"]["message"]


async def test_local_clones_when_allowed(make_settings: Any, tmp_path: Path) -> None:
    source = make_project(tmp_path / "source" / "shop")
    settings = make_settings()
    async with service(settings, allow_local=True) as server:
        _, operator = await server.login_new_user(Role.OPERATOR)
        async with server.http(operator) as http:
            added = await http.post(
                "/api/v1/projects",
                json={"name": "local", "git_url": str(source), "default_branch": "main"},
            )
            ready = await until_settled(http, "local")
            bad_name = await http.get("/api/v1/projects/..%2Fetc")
    assert added.status_code == 202, added.text
    assert ready["state"] == "ready", ready
    assert ready["default_branch"] == "main"
    assert bad_name.status_code in (404, 422)


async def test_projects_from_the_command_line(
    make_settings: Any, git_daemon: tuple[str, Path], tmp_path: Path
) -> None:
    url, _ = git_daemon
    settings = make_settings()
    async with service(settings) as server:
        user = await add_user(server.app, Role.OPERATOR)
        cli = Cli(tmp_path / "home", server.url)
        cli.home.mkdir()
        assert (await cli.login(user.username)).code == 0
        added = await cli.run("projects", "add", "shop", f"{url}/shop", "--wait")
        failed = await cli.run("projects", "add", "ghost", f"{url}/ghost", "--wait")
        listed = await cli.run("projects", "list")
        shown = await cli.run("projects", "show", "shop")
        removed = await cli.run("projects", "remove", "shop")
        refused = await cli.run("projects", "add", "x", "ext::sh -c id")
    assert (added.code, added.stdout) == (0, "project shop is ready\n"), added.stderr
    assert failed.code == 1 and "error: clone failed: " in failed.stdout
    rows = [line.split()[:2] for line in listed.stdout.splitlines()]
    assert rows == [["NAME", "STATE"], ["ghost", "failed"], ["shop", "ready"]]
    assert shown.code == 0 and "last commit: " in shown.stdout
    assert (removed.code, removed.stdout) == (0, "project shop removed\n")
    assert refused.code == 4
    assert "remote helper transports" in refused.stderr
