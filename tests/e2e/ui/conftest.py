"""The web UI in a real browser: Debian's Chromium driven by Playwright, against a
real server whose agents are scripted (`agents.py`).

One browser per session, one server per module, a fresh browser context (its own
sessionStorage) per test; all in the session's event loop, so the server (uvicorn
in this loop) and the async Playwright API share it. A failing test leaves a
screenshot of its page in `tmp/artifacts/` (or `$DEVTEAM_TEST_ARTIFACTS`).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from devteam.app import create_app
from devteam.domain.enums import Role
from devteam.settings import Settings
from devteam.settings.security import RateLimitsConfig
from tests.auth import JWT_SECRET, PASSWORD, REPO, add_user, security_config
from tests.e2e.ui.agents import TeamScript
from tests.live import LiveServer, serve
from tests.sample_project import make_project
from tests.servers import unavailable

CHROMIUM = (
    os.environ.get("DEVTEAM_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
)
AXE = REPO / "tests" / "node" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = Path(os.environ.get("DEVTEAM_TEST_ARTIFACTS") or REPO / "tmp" / "artifacts")
LAPTOP = {"width": 1366, "height": 860}
PHONE = {"width": 390, "height": 844}
# Generous enough that the tests never meet them, except where a test means to.
RATE_LIMITS = RateLimitsConfig(
    reads_per_user="2000/minute",
    writes_per_user="600/minute",
    task_submissions_per_user="600/minute",
    login_per_ip="600/minute",
    ws_connect_per_user="600/minute",
)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Any]:
    if not Path(CHROMIUM).exists():
        unavailable(f"Chromium is not installed at {CHROMIUM}")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        instance = await playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        yield instance
        await instance.close()


class UiServer:
    """The live server, its agents' gates, and a way to make users."""

    def __init__(self, live: LiveServer, script: TeamScript) -> None:
        self.live = live
        self.script = script
        self.url = live.url

    async def user(self, role: Role) -> Any:
        return await add_user(self.live.app, role)

    async def token(self, username: str) -> str:
        from tests.live import login

        return await login(self.url, username, PASSWORD)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ui_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[UiServer]:
    tmp = tmp_path_factory.mktemp("ui")
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp / 'app.db'}",
        config_dir=REPO / "config",
        prompts_dir=REPO / "system_prompts",
        workspaces_root=tmp / "workspaces",
        redis_url=None,
        jwt_secret=JWT_SECRET,
        _env_file=None,  # type: ignore[call-arg]
    )
    make_project(tmp / "workspaces" / "orders")
    script = TeamScript()
    app = create_app(
        settings, security_config(rate_limits=RATE_LIMITS), executors=True, agents=script.agents()
    )
    async with serve(app, settings) as live:
        yield UiServer(live, script)


class Problems:
    """What the page complained about: console errors, failed scripts, CSP violations."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def watch(self, page: Any) -> None:
        def console(message: Any) -> None:
            # A refused request (4xx) is logged by the browser; the UI handles those.
            if message.type == "error" and not re.search(r"status of 4\d\d", message.text):
                self.items.append(f"console: {message.text}")

        page.on("console", console)
        page.on("pageerror", lambda error: self.items.append(f"page error: {error}"))


@pytest_asyncio.fixture(loop_scope="session")
async def context(browser: Any, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A browser context at laptop width; screenshots of its pages when the test fails."""
    instance = await browser.new_context(viewport=LAPTOP, locale="en-GB", timezone_id="UTC")
    instance.set_default_timeout(10_000)
    problems = Problems()
    instance.on("page", problems.watch)
    instance.problems = problems
    yield instance
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)[-150:]
        for i, page in enumerate(instance.pages):
            await page.screenshot(path=ARTIFACTS / f"{name}-{i}.png", full_page=True)
    await instance.close()
    if report is not None and report.passed:
        assert not problems.items, problems.items


@pytest_asyncio.fixture(loop_scope="session")
async def page(context: Any) -> Any:
    return await context.new_page()


@pytest.fixture(scope="session")
def axe_source() -> str:
    if not AXE.exists():
        unavailable(f"axe-core is not installed: run npm ci --prefix tests/node ({AXE})")
    return AXE.read_text()


@pytest.fixture
def accessible(axe_source: str) -> Iterator[Any]:
    """`await accessible(page)`: axe-core finds no serious or critical violation."""

    async def check(page: Any) -> None:
        # evaluate() runs outside the page's CSP, which would refuse an inline script.
        if not await page.evaluate("typeof window.axe !== 'undefined'"):
            await page.evaluate(axe_source)
        violations = await page.evaluate(
            "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
            ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
            ".map(v => ({id: v.id, impact: v.impact, help: v.help,"
            " nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}))"
        )
        assert not violations, f"accessibility violations on {page.url}: {violations}"

    yield check
