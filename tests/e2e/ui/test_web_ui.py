"""The web UI at /ui, used the way a person would: in Chromium, against a live server."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import expect

from devteam.domain.enums import Role
from devteam.security.ratelimit import RateLimitScope
from tests.auth import PASSWORD
from tests.e2e.ui.conftest import ARTIFACTS, PHONE, UiServer
from tests.live import reaches

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

TERMINAL = re.compile(r"^(completed|failed|cancelled)$")


async def log_in(page: Any, server: UiServer, username: str) -> None:
    await page.goto(server.url + "/")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await page.get_by_role("heading", name="Tasks", exact=True).wait_for()


async def submit_api(server: UiServer, token: str, **body: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        response = await client.post(
            "/api/v1/tasks", json=body, headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 202, response.text
    task: dict[str, Any] = response.json()
    return task


def status_of(page: Any) -> Any:
    return page.locator(".status-slot .badge")


async def timeline_seqs(page: Any) -> list[int]:
    values = await page.locator(".timeline .event").evaluate_all(
        "items => items.map(li => Number(li.dataset.seq))"
    )
    return [int(v) for v in values]


async def test_serves_the_page_under_a_strict_policy(ui_server: UiServer) -> None:
    async with httpx.AsyncClient(base_url=ui_server.url) as client:
        root = await client.get("/")
        page = await client.get("/ui")
        script = await client.get("/ui/assets/js/main.js")
        escape = await client.get("/ui/assets/..%2F..%2Fapp.py")
        missing = await client.get("/ui/assets/nothing.js")
    assert root.status_code == 307
    assert root.headers["location"] == "/ui"
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.headers["content-security-policy"] == policy
    assert escape.status_code in (404, 422)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


async def test_log_in_submit_and_watch_the_task_run_live(
    ui_server: UiServer, page: Any, accessible: Any
) -> None:
    user = await ui_server.user(Role.DEVELOPER)
    await page.goto(ui_server.url + "/")
    await page.get_by_role("heading", name="Log in to DevTeam").wait_for()
    assert page.url.startswith(ui_server.url + "/ui")
    await accessible(page)
    await page.get_by_label("Username").fill(user.username)
    await page.get_by_label("Password").fill("not the password")
    await page.get_by_role("button", name="Log in").click()
    await page.get_by_role("alert").filter(has_text="Wrong username or password").wait_for()
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()

    await page.get_by_text("No tasks yet.").wait_for()
    await accessible(page)
    await page.get_by_role("link", name="Submit a task").click()
    await page.get_by_label("What should the team do?").fill(
        "Add a /healthz endpoint to the orders service [wait:live-run]"
    )
    await page.get_by_label("Agent").select_option("backend")
    await page.get_by_label("Project").fill("orders")
    await page.get_by_label("Complexity").fill("4")
    await page.get_by_label("Max cost (USD)").fill("2.5")
    await accessible(page)
    await page.get_by_role("button", name="Submit").click()

    # The task page follows the run live: the agent is waiting at the gate.
    await page.get_by_text("waiting at live-run").wait_for()
    await page.get_by_text("in progress", exact=True).first.wait_for()
    assert await page.locator(".live-state").text_content() == "live"
    await accessible(page)
    ui_server.script.open("live-run")
    await status_of(page).filter(has_text="completed").wait_for()

    # The result: a readable diff with its checks, verified.
    result = page.locator("section.block", has=page.get_by_role("heading", name="Result"))
    await result.get_by_text("Adds GET /healthz").wait_for()
    await result.get_by_role("region", name="Diff of app/health.py").wait_for()
    added = result.locator(".diff-lines tr.d-add td.code", has_text='@router.get("/healthz")')
    assert await added.count() == 1
    removed = result.locator(".diff-lines tr.d-del td.code")
    assert 'FastAPI(title="orders")' in (await removed.first.text_content() or "")
    await result.get_by_text("python3 -m pytest -q").wait_for()
    await result.get_by_text("yes: the checks pass").wait_for()
    await page.locator(".usage").get_by_text("$0.02").wait_for()

    # Every event once, in order, ending with the completion.
    await page.locator(".timeline .event[data-type='task.completed']").wait_for()
    seqs = await timeline_seqs(page)
    assert seqs == list(range(1, len(seqs) + 1))
    assert (
        await page.locator(".timeline .event").last.get_attribute("data-type") == "task.completed"
    )
    await accessible(page)

    # The list shows the finished task with its agent, project and cost.
    await page.get_by_role("link", name="Tasks", exact=True).click()
    row = page.locator("tr", has_text="Add a /healthz endpoint")
    for cell in ("completed", "backend", "orders", "$0.02"):
        await row.get_by_role("cell", name=cell, exact=True).wait_for()
    await accessible(page)


async def test_list_updates_live_and_filters(ui_server: UiServer, page: Any) -> None:
    user = await ui_server.user(Role.DEVELOPER)
    token = await ui_server.token(user.username)
    await log_in(page, ui_server, user.username)
    await page.get_by_text("No tasks yet.").wait_for()
    task = await submit_api(
        ui_server,
        token,
        task="Write the release notes [wait:list-live]",
        complexity=2,
        agent_type="research",
    )
    await page.reload()
    row = page.locator(f"tr[data-task-id='{task['id']}']")
    await row.get_by_text("in progress").wait_for()
    ui_server.script.open("list-live")
    await row.get_by_text("completed").wait_for()  # without a reload

    await page.get_by_label("Status").select_option("failed")
    await page.get_by_role("button", name="Filter").click()
    await page.get_by_text("No task matches these filters.").wait_for()
    assert "status=failed" in page.url


async def test_approve_a_plan_that_waits(ui_server: UiServer, page: Any, accessible: Any) -> None:
    user = await ui_server.user(Role.DEVELOPER)
    token = await ui_server.token(user.username)
    task = await submit_api(
        ui_server,
        token,
        task="Rename the orders table to purchases",
        complexity=3,
        require_approval=True,
    )
    await reaches(ui_server.live.services, task["id"], {"awaiting_approval"})
    await log_in(page, ui_server, user.username)
    await page.goto(f"{ui_server.url}/ui#/tasks/{task['id']}")
    await status_of(page).filter(has_text="awaiting approval").wait_for()
    # Why it waits, in words.
    await page.get_by_text(
        "Rule RequireApproval changed the step planning → delegated: approval was requested"
    ).wait_for()
    await accessible(page)
    await page.get_by_role("button", name="Approve plan").click()
    await status_of(page).filter(has_text="completed").wait_for()
    assert await page.get_by_role("button", name="Approve plan").count() == 0
    await page.locator(".timeline .event[data-type='task.approved']").wait_for()


async def test_reject_a_plan(ui_server: UiServer, page: Any) -> None:
    user = await ui_server.user(Role.DEVELOPER)
    token = await ui_server.token(user.username)
    task = await submit_api(
        ui_server,
        token,
        task="Drop the legacy billing module",
        complexity=3,
        require_approval=True,
    )
    await reaches(ui_server.live.services, task["id"], {"awaiting_approval"})
    await log_in(page, ui_server, user.username)
    await page.goto(f"{ui_server.url}/ui#/tasks/{task['id']}")
    await page.get_by_text("Reject…").click()
    await page.get_by_label("Why (optional)").fill("billing still uses it")
    await page.get_by_role("button", name="Reject plan").click()
    await status_of(page).filter(has_text=TERMINAL).wait_for(timeout=30_000)
    assert await page.get_by_role("button", name="Approve plan").count() == 0


async def test_cancel_a_running_task(ui_server: UiServer, page: Any) -> None:
    user = await ui_server.user(Role.DEVELOPER)
    token = await ui_server.token(user.username)
    task = await submit_api(
        ui_server,
        token,
        task="Refactor the payment retries [block]",
        complexity=3,
        agent_type="backend",
    )
    await log_in(page, ui_server, user.username)
    await page.goto(f"{ui_server.url}/ui#/tasks/{task['id']}")
    await page.get_by_text("working until cancelled").wait_for()
    await page.get_by_role("button", name="Cancel task").click()
    await page.get_by_role("button", name="Yes, cancel it").click()
    await status_of(page).filter(has_text="cancelled").wait_for()
    await page.locator(".timeline .event[data-type='task.cancelled']").first.wait_for()
    assert await page.get_by_role("button", name="Cancel task").count() == 0
    done = await ui_server.live.finished(task["id"])
    assert done.status == "cancelled"


async def test_a_retry_is_shown_with_its_reason(ui_server: UiServer, page: Any) -> None:
    user = await ui_server.user(Role.DEVELOPER)
    token = await ui_server.token(user.username)
    task = await submit_api(
        ui_server,
        token,
        task="Update the API client [fail-once]",
        complexity=2,
        agent_type="backend",
    )
    await log_in(page, ui_server, user.username)
    await page.goto(f"{ui_server.url}/ui#/tasks/{task['id']}")
    retry = page.locator(".timeline .event[data-type='task.retrying']")
    await retry.get_by_text("Retrying, attempt 2").wait_for()
    assert "the workspace server timed out" in (await retry.text_content() or "")
    await status_of(page).filter(has_text="completed").wait_for()
    about = page.locator(".facts div", has=page.locator("dt", has_text="Attempt"))
    await about.locator("dd", has_text="2").wait_for()


async def test_a_planned_task_shows_its_tree_and_typed_results(
    ui_server: UiServer, page: Any, accessible: Any
) -> None:
    user = await ui_server.user(Role.DEVELOPER)
    token = await ui_server.token(user.username)
    task = await submit_api(
        ui_server,
        token,
        task="Add rate limiting to the public orders API",
        complexity=6,
        project_id="orders",
    )
    await ui_server.live.finished(task["id"])
    await log_in(page, ui_server, user.username)
    await page.goto(f"{ui_server.url}/ui#/tasks/{task['id']}")
    await status_of(page).filter(has_text="completed").wait_for()
    plan = page.locator("section.block", has=page.get_by_role("heading", name="Plan"))
    for phase in ("research", "analysis", "implementation"):
        await plan.get_by_role("heading", name=f"Phase: {phase}").wait_for()
    # Why the analysis waited: the phase rule, in words.
    await page.get_by_text("Rule WaitForEarlierPhases held back").first.wait_for()
    result = page.locator("section.block", has=page.get_by_role("heading", name="Result"))
    await result.get_by_text(
        "A liveness probe should not depend on downstream services."
    ).wait_for()
    source = result.get_by_role("link", name="Kubernetes: liveness probes")
    assert (await source.get_attribute("href") or "").startswith("https://kubernetes.io/")
    # A source whose address is not a web address stays text.
    assert await result.get_by_role("link", name="not a link").count() == 0
    await result.get_by_text("A FastAPI service with one router and pytest tests.").wait_for()
    # The implementation's change, and its revisions' where a review asked for them.
    await result.get_by_role("region", name="Diff of app/main.py").first.wait_for()
    await accessible(page)

    # A subtask has its own page, with its own events only.
    await plan.get_by_role("link", name="research").click()
    await page.get_by_role("heading", name="Subtask research").wait_for()
    await status_of(page).filter(has_text="completed").wait_for()
    await page.locator(".timeline .event").first.wait_for()
    whos = await page.locator(".timeline .event .event-who").all_text_contents()
    assert set(whos) == {"research"}


async def test_events_and_reviews_in_words(ui_server: UiServer, page: Any) -> None:
    """The wording of events and results the verification loop brings (API.md)."""
    await page.goto(ui_server.url + "/ui")
    await page.get_by_label("Username").wait_for()
    said = await page.evaluate(
        """async () => {
          const {describeEvent} = await import('/ui/assets/js/format.js');
          const {resultView} = await import('/ui/assets/js/results.js');
          const say = (type, data) => describeEvent({type, data, seq: 1});
          const review = resultView({output_type: 'Review', output: {
            verdict: 'request_changes', summary: 'The endpoint lacks a test.',
            findings: [{severity: 'major', path: 'app/health.py', line: 6,
                        message: 'No test covers /healthz.'}]}});
          return {
            check: say('check.completed', {name: 'test', command: 'pytest -q', round: 2,
                                           exit_code: 1, passed: false, duration_s: 3.5}),
            review: say('review.completed', {verdict: 'request_changes', round: 1,
                                             findings: [{}, {}]}),
            approved: say('review.completed', {verdict: 'approve', round: 2, findings: []}),
            rule: say('rule.decision', {rule: 'LimitConcurrency', decision: 'delay',
                                        reason: 'all 4 backend slots are busy',
                                        transition: 'delegated => in_progress'}),
            rendered: review.textContent,
          };
        }"""
    )
    assert said["check"] == ("Check test, round 2: failed (exit 1, 3.50 s) — pytest -q.")
    assert said["review"] == "Review, round 1: changes requested (2 findings)."
    assert said["approved"] == "Review, round 2: approved (0 findings)."
    assert said["rule"] == (
        "Rule LimitConcurrency held back the step delegated → in progress: "
        "all 4 backend slots are busy."
    )
    assert "changes requested" in said["rendered"]
    assert "app/health.py:6" in said["rendered"]
    assert "No test covers /healthz." in said["rendered"]


async def test_task_text_is_shown_as_text_never_run(ui_server: UiServer, page: Any) -> None:
    user = await ui_server.user(Role.DEVELOPER)
    await log_in(page, ui_server, user.username)
    attack = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script> fix the bug'
    await page.get_by_role("link", name="Submit a task").click()
    await page.get_by_label("What should the team do?").fill(attack)
    await page.get_by_label("Agent").select_option("research")
    await page.get_by_role("button", name="Submit").click()
    await page.locator(".task-text").filter(has_text=attack).wait_for()
    await status_of(page).filter(has_text="completed").wait_for()
    await page.get_by_role("link", name="Tasks", exact=True).click()
    await page.get_by_role("link", name=attack).wait_for()
    assert await page.evaluate("window.pwned") is None
    assert await page.locator("main img").count() == 0


async def test_a_viewer_sees_no_buttons_they_may_not_use(
    ui_server: UiServer, page: Any, accessible: Any
) -> None:
    admin = await ui_server.user(Role.ADMIN)
    admin_token = await ui_server.token(admin.username)
    user = await ui_server.user(Role.DEVELOPER)
    token = await ui_server.token(user.username)
    task = await submit_api(
        ui_server, token, task="Bump the FastAPI version", complexity=2, require_approval=True
    )
    await reaches(ui_server.live.services, task["id"], {"awaiting_approval"})
    # The developer becomes a viewer: their task stays theirs to read, not to steer.
    async with httpx.AsyncClient(base_url=ui_server.url) as client:
        response = await client.patch(
            f"/api/v1/users/{user.id}",
            json={"role": "viewer"},
            headers={"Authorization": f"Bearer {admin_token}"},
        )
        assert response.status_code == 200, response.text
    await log_in(page, ui_server, user.username)
    nav = page.get_by_role("navigation", name="Main")
    assert await nav.get_by_role("link").all_text_contents() == ["Tasks", "Projects"]
    assert await page.get_by_role("link", name="Submit a task").count() == 0
    await page.get_by_role("link", name="Bump the FastAPI version").click()
    await status_of(page).filter(has_text="awaiting approval").wait_for()
    await page.locator(".timeline .event").first.wait_for()
    assert await page.locator("main button").count() == 0
    await accessible(page)
    await page.goto(f"{ui_server.url}/ui#/tasks/new")
    await page.get_by_text("Your role may read tasks but not submit them.").wait_for()


async def test_admin_pages_and_projects(ui_server: UiServer, page: Any, accessible: Any) -> None:
    admin = await ui_server.user(Role.ADMIN)
    await log_in(page, ui_server, admin.username)
    await page.get_by_role("link", name="Projects").click()
    # The repository placed in the workspaces folder by hand is listed, ready.
    row = page.locator("tr", has=page.get_by_role("cell", name="orders", exact=True))
    await row.get_by_text("ready").wait_for()
    await page.get_by_label("Git URL").wait_for()  # admins may add one
    await accessible(page)

    await page.get_by_role("link", name="Users").click()
    await page.get_by_role("cell", name=admin.username).wait_for()
    await page.get_by_label("Username").fill("grace")
    await page.get_by_label("Password").fill("a long enough password 42")
    await page.get_by_label("Role").select_option("operator")
    await page.get_by_role("button", name="Add user").click()
    await page.get_by_text("Added grace (operator).").wait_for()
    await page.get_by_role("cell", name="grace").wait_for()
    await accessible(page)

    await page.get_by_role("link", name="Audit log").click()
    await page.locator("tr", has_text="user.create").first.wait_for()
    await page.get_by_label("Action").fill("auth.login")
    await page.get_by_role("button", name="Filter").click()
    await page.wait_for_url(re.compile(r"action=auth.login"))
    await page.locator("tbody tr").first.wait_for()
    actions = await page.locator("tbody tr td:nth-child(3)").all_text_contents()
    assert set(actions) == {"auth.login"}
    await accessible(page)


async def test_live_view_resumes_after_a_dropped_connection(ui_server: UiServer, page: Any) -> None:
    user = await ui_server.user(Role.DEVELOPER)
    token = await ui_server.token(user.username)
    task = await submit_api(
        ui_server,
        token,
        task="Tune the connection pool [wait:drop]",
        complexity=3,
        agent_type="backend",
    )
    connections: list[Any] = []
    subscribes: list[str] = []
    reconnect = asyncio.Event()

    async def route(ws: Any) -> None:
        connections.append(ws)
        server: Any = None
        waiting: list[str | bytes] = []

        def to_server(message: str | bytes) -> None:
            if isinstance(message, str) and '"subscribe"' in message:
                subscribes.append(message)
            if server is None:
                waiting.append(message)
            else:
                server.send(message)

        ws.on_message(to_server)
        if len(connections) > 1:
            await reconnect.wait()  # the run goes on while the page is cut off
        server = ws.connect_to_server()
        for message in waiting:
            server.send(message)

    await page.route_web_socket(re.compile(r"/api/v1/ws"), route)
    await log_in(page, ui_server, user.username)
    await page.goto(f"{ui_server.url}/ui#/tasks/{task['id']}")
    await page.get_by_text("waiting at drop").wait_for()
    before = await timeline_seqs(page)

    await connections[0].close(code=4000, reason="dropped by the test")
    await page.locator(".live-state[data-state='reconnecting']").wait_for()
    ui_server.script.open("drop")
    await ui_server.live.finished(task["id"])
    reconnect.set()

    await page.locator(".timeline .event[data-type='task.completed']").wait_for()
    await status_of(page).filter(has_text="completed").wait_for()
    seqs = await timeline_seqs(page)
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    assert len(seqs) > len(before)
    assert f'"after": {before[-1]}' in subscribes[-1].replace('"after":', '"after": ')
    assert await page.locator(".timeline .event[data-type='task.completed']").count() == 1
    assert len(connections) == 2


async def test_usable_from_the_keyboard(ui_server: UiServer, page: Any) -> None:
    user = await ui_server.user(Role.DEVELOPER)
    await page.goto(ui_server.url + "/ui")
    await page.get_by_label("Username").wait_for()
    # The username field has the focus; Tab goes to the password; Enter logs in.
    await page.keyboard.type(user.username)
    await page.keyboard.press("Tab")
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Enter")
    await page.get_by_role("heading", name="Tasks", exact=True).wait_for()

    async def focused() -> str:
        text: str = await page.evaluate("document.activeElement.textContent.trim()")
        return text

    # From the top of the page, the first Tab reaches the skip link.
    await page.reload()
    await page.get_by_role("heading", name="Tasks", exact=True).wait_for()
    await page.keyboard.press("Tab")
    assert await focused() == "Skip to content"
    await page.keyboard.press("Enter")
    assert await page.evaluate("document.activeElement.id") == "main"
    await page.keyboard.press("Tab")
    assert await focused() == "Submit a task"
    await page.keyboard.press("Enter")
    await page.get_by_role("heading", name="Submit a task").wait_for()
    # The form is built once the agent types and projects are known; then the task's
    # text field has the focus.
    await expect(page.locator("[name=task]")).to_be_focused()
    await page.keyboard.type("Add request ids to the access log")
    for _ in range(2):  # past the type, to the agent
        await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.name") == "agent_type"
    await page.keyboard.press("Shift+Tab")
    assert await page.evaluate("document.activeElement.name") == "task_type"
    await page.keyboard.press("Enter")  # submits the form from a text field
    await status_of(page).filter(has_text=TERMINAL).wait_for(timeout=30_000)


async def test_login_offers_passwords_only_without_single_sign_on(
    ui_server: UiServer, page: Any
) -> None:
    await page.goto(ui_server.url + "/ui")
    await page.get_by_label("Password").wait_for()
    assert await page.locator(".providers button").count() == 0


async def test_an_expired_session_returns_to_login(ui_server: UiServer, page: Any) -> None:
    user = await ui_server.user(Role.DEVELOPER)
    await log_in(page, ui_server, user.username)
    await page.evaluate(
        """() => {
          const s = JSON.parse(sessionStorage.getItem('devteam.session'));
          s.access_token = 'expired'; s.refresh_token = 'revoked';
          sessionStorage.setItem('devteam.session', JSON.stringify(s));
        }"""
    )
    await page.get_by_role("link", name="Submit", exact=True).click()
    await page.get_by_role("heading", name="Log in to DevTeam").wait_for()
    await page.get_by_text("Your session has expired; log in again.").wait_for()
    await page.get_by_label("Username").fill(user.username)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    # Back where the user was going.
    await page.get_by_role("heading", name="Submit a task").wait_for()


async def test_too_many_requests_says_when_to_retry(ui_server: UiServer, page: Any) -> None:
    user = await ui_server.user(Role.DEVELOPER)
    await log_in(page, ui_server, user.username)
    limiter = ui_server.live.services.security.rate_limiter
    with pytest.raises(Exception, match="rate"):
        for _ in range(3000):
            await limiter.hit(RateLimitScope.READ, str(user.id))
    await page.reload()
    await (
        page.get_by_role("alert")
        .filter(has_text=re.compile(r"Too many requests: try again in \d+ s"))
        .wait_for()
    )


async def test_readable_at_phone_width(ui_server: UiServer, browser: Any, accessible: Any) -> None:
    user = await ui_server.user(Role.DEVELOPER)
    context = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        page = await context.new_page()
        await log_in(page, ui_server, user.username)
        await page.get_by_role("link", name="Submit a task").click()
        await page.get_by_label("What should the team do?").fill(
            "Document the orders API for partners"
        )
        await page.get_by_label("Agent").select_option("backend")
        await page.get_by_role("button", name="Submit").click()
        await status_of(page).filter(has_text="completed").wait_for()
        # Nothing wider than the screen, except inside the diff's own scroller.
        overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0
        await accessible(page)
    finally:
        await context.close()


async def test_screenshots_of_the_main_pages(ui_server: UiServer, page: Any) -> None:
    """The README's pictures: `DEVTEAM_UI_SCREENSHOTS=docs/images` writes them there."""
    folder = Path(os.environ.get("DEVTEAM_UI_SCREENSHOTS") or ARTIFACTS / "readme")
    folder.mkdir(parents=True, exist_ok=True)
    user = await ui_server.user(Role.DEVELOPER)
    token = await ui_server.token(user.username)
    planned = await submit_api(
        ui_server,
        token,
        task="Add rate limiting to the public orders API, per API key",
        complexity=6,
        project_id="orders",
    )
    await submit_api(
        ui_server,
        token,
        task="Compare Redis and Postgres for the job queue",
        complexity=3,
        agent_type="research",
    )
    await submit_api(
        ui_server,
        token,
        task="Rename the orders table to purchases and migrate the data",
        complexity=5,
        project_id="orders",
        require_approval=True,
    )
    await submit_api(
        ui_server,
        token,
        task="Profile the checkout endpoint under load",
        metadata={"wait": "shots"},
        complexity=4,
        project_id="orders",
        agent_type="backend",
    )
    coded = await submit_api(
        ui_server,
        token,
        task="Add a /healthz endpoint to the orders service with a test",
        complexity=3,
        project_id="orders",
        agent_type="backend",
    )
    await ui_server.live.finished(planned["id"])
    await ui_server.live.finished(coded["id"])
    await log_in(page, ui_server, user.username)
    await page.locator("tr[data-status='in_progress']").wait_for()
    await page.locator("tr[data-status='awaiting_approval']").wait_for()
    await page.screenshot(path=folder / "ui-tasks.png")

    await page.goto(f"{ui_server.url}/ui#/tasks/{coded['id']}")
    await page.locator(".timeline .event[data-type='task.completed']").wait_for()
    await page.get_by_role("region", name="Diff of app/main.py").wait_for()
    await page.screenshot(path=folder / "ui-task.png", full_page=True)
    ui_server.script.open("shots")
    for name in ("ui-tasks.png", "ui-task.png"):
        assert (folder / name).stat().st_size > 10_000
