"""The `devteam` command line."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from devteam.cli_users import users_app
from devteam.domain.errors import ConfigError

if TYPE_CHECKING:
    from devteam.settings import AppConfig, Settings

# Settings, logging and the service are imported when a command needs them: the
# commands on the API (login, submit, watch, tasks) start quickly without them.

app = typer.Typer(
    name="devteam",
    help="DevTeam: run an AI development team.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


VERBOSE = False
"""`-v`: commands other than `serve` and `worker` log their INFO lines too (migrations, audit)."""


def _print_version(value: bool) -> None:
    if value:
        from devteam import __version__

        typer.echo(f"devteam {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also print log lines (migrations, audit).")
    ] = False,
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """DevTeam: run an AI development team."""
    global VERBOSE
    VERBOSE = verbose


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one line to stderr and exit."""
    typer.echo(f"devteam: {message}", err=True)
    raise typer.Exit(code)


def load(*, service: bool = False, **overrides: Any) -> tuple[Settings, AppConfig]:
    """Settings and YAML config, or a one-line reason and exit code 2.

    Only a `service` (serve, worker) logs at the configured level; other commands
    log warnings and errors alone, unless `-v` was given.
    """
    from devteam.observability.logging import configure_logging
    from devteam.settings import load_config, load_settings

    try:
        settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
        config = load_config(settings.config_dir)
    except ConfigError as exc:
        fail(exc.message)
    fmt = settings.log_format
    if fmt == "auto":
        fmt = "json" if settings.is_production else "console"
    level = settings.log_level if service or VERBOSE else "WARNING"
    configure_logging(level=level, fmt=fmt)
    return settings, config


def load_agents(spec: str) -> Any:
    """The agents of `module:factory`: a callable returning {agent type: agent}."""
    import importlib

    module_name, _, attribute = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute or "agents")
        return factory()
    except Exception as exc:
        fail(f"--agents {spec}: {type(exc).__name__}: {exc}")


AGENTS_OPTION = typer.Option(
    hidden=True,
    help="Development: take the agents from MODULE:FACTORY (a callable returning "
    "{agent type: agent}) instead of the built-in ones.",
)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    migrate: Annotated[
        bool | None,
        typer.Option("--migrate/--no-migrate", help="Apply database migrations at start."),
    ] = None,
    executors: Annotated[
        bool,
        typer.Option(
            "--executors/--no-executors",
            help="Also run agent work in this process (the embedded default); "
            "--no-executors serves the API only, for deployments with `devteam worker`.",
        ),
    ] = True,
    agents: Annotated[str | None, AGENTS_OPTION] = None,
) -> None:
    """Start the API (embedded defaults: SQLite and the in-process broker)."""
    import uvicorn

    from devteam.app import create_app, server_config
    from devteam.heap import settle_heap

    settings, config = load(service=True, host=host, port=port, migrate_on_start=migrate)
    if not executors and settings.redis_url is None:
        fail("--no-executors needs DEVTEAM_REDIS_URL: workers reach the work through Redis")
    team = load_agents(agents) if agents else None
    try:
        application = create_app(settings, config, executors=executors, agents=team)
    except ConfigError as exc:
        fail(exc.message)
    settle_heap()
    server = uvicorn.Server(server_config(application, settings))
    server.run()
    if not server.started:
        sys.exit(3)


@app.command()
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(
            help="Agent attempts this worker runs at once "
            "(default: DEVTEAM_EXECUTOR_CONCURRENCY, else the global limit)."
        ),
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Interface of the health and metrics endpoint.")
    ] = None,
    port: Annotated[
        int, typer.Option(help="Port of the health and metrics endpoint (0: none).")
    ] = 9101,
    agents: Annotated[str | None, AGENTS_OPTION] = None,
) -> None:
    """Run agent work only (no API), on Postgres and Redis next to `serve --no-executors`.

    SIGTERM (or Ctrl-C) stops taking work, lets running attempts finish within
    DEVTEAM_SHUTDOWN_GRACE_S and hands the rest back to the queue.
    """
    settings, config = load(service=True, host=host)
    if concurrency is not None:
        settings = settings.model_copy(update={"executor_concurrency": concurrency})
    if settings.redis_url is None:
        fail("a worker needs DEVTEAM_REDIS_URL: the API hands it work through Redis")
    from devteam.heap import settle_heap
    from devteam.worker import run_worker

    team = load_agents(agents) if agents else None
    settle_heap()
    asyncio.run(run_worker(settings, config, port, agents=team))


@app.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply database migrations up to REVISION (default: the latest)."""
    from devteam.storage import Database
    from devteam.storage.migrate import current_revision, upgrade

    settings, _ = load()

    async def run() -> str | None:
        db = Database(settings.database_url)
        try:
            await upgrade(db, revision)
            return await current_revision(db)
        finally:
            await db.close()

    try:
        current = asyncio.run(run())
    except Exception as exc:
        fail(f"migration failed: {type(exc).__name__}: {exc}", code=1)
    typer.echo(f"database at revision {current}")


app.add_typer(users_app, name="users")


@app.command()
def version() -> None:
    """Print the version."""
    from devteam import __version__

    typer.echo(__version__)


mcp_app = typer.Typer(help="MCP servers DevTeam ships.", no_args_is_help=True)
app.add_typer(mcp_app, name="mcp")


@mcp_app.command("workspace")
def mcp_workspace(
    root: Annotated[
        Path, typer.Option(help="The folder it serves; no path outside it is reachable.")
    ],
    http: Annotated[
        bool, typer.Option("--http", help="Serve Streamable HTTP at /mcp instead of stdio.")
    ] = False,
    host: Annotated[str, typer.Option(help="Interface for --http.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port for --http.")] = 8765,
) -> None:
    """Run the workspace MCP server (files of one folder) over stdio or Streamable HTTP."""
    from devteam.mcp.workspace import create_workspace_server, serve_http
    from devteam.observability.logging import configure_logging

    # stdout carries the protocol over stdio: logs go to stderr only.
    configure_logging(level="WARNING", fmt="console", stream=sys.stderr)
    if not root.is_dir():
        fail(f"--root {root}: not a folder")
    server = create_workspace_server(root)
    if http:
        asyncio.run(serve_http(server, host=host, port=port))
    else:
        server.run("stdio")


@mcp_app.command("sandbox")
def mcp_sandbox(
    root: Annotated[
        Path, typer.Option(help="The worktree commands run in: the only folder they can write.")
    ],
    config_dir: Annotated[
        Path | None,
        typer.Option(help="Folder of verification.yaml (default: DEVTEAM_CONFIG_DIR, config)."),
    ] = None,
) -> None:
    """Run the sandbox MCP server (commands in one folder, isolated) over stdio."""
    from devteam.mcp.sandbox import create_sandbox_server
    from devteam.observability.logging import configure_logging
    from devteam.settings import VerificationConfig, load_settings, load_yaml_model

    # stdout carries the protocol over stdio: logs go to stderr only.
    configure_logging(level="WARNING", fmt="console", stream=sys.stderr)
    if not root.is_dir():
        fail(f"--root {root}: not a folder")
    try:
        folder = config_dir or load_settings().config_dir
        config = load_yaml_model(folder / "verification.yaml", VerificationConfig)
    except ConfigError as exc:
        fail(exc.message)
    server = create_sandbox_server(root, config.sandbox)
    server.run("stdio")


# -- the command line on the API (cli_client.py, imported when a command runs) ----------

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="DEVTEAM_URL",
        help="The service; default: the one you logged in to, else http://127.0.0.1:8000.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's JSON answer.")]


def _client(main: Any) -> None:
    from devteam.cli_client import run

    raise typer.Exit(run(main))


@app.command()
def login(
    url: UrlOption = None,
    username: Annotated[str | None, typer.Option(help="Prompted for when not given.")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin's first line.")
    ] = False,
    sso: Annotated[
        bool,
        typer.Option(
            "--sso",
            help="Sign in at the service's identity provider (device code, else the browser).",
        ),
    ] = False,
    browser: Annotated[
        bool, typer.Option(help="With --sso: open the browser when no device code is offered.")
    ] = True,
) -> None:
    """Log in to a running service; the tokens are kept in ~/.config/devteam/credentials.json."""
    from devteam import cli_client

    if sso:
        _client(cli_client.login_sso(url, open_browser=browser))
        return
    if password_stdin:
        if username is None:
            fail("--password-stdin needs --username")
        name = username
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            fail("no terminal to ask for the password: use --password-stdin")
        name = username or typer.prompt("username")
        password = typer.prompt("password", hide_input=True)
    _client(cli_client.login(url, name, password))


@app.command()
def logout(url: UrlOption = None) -> None:
    """End the session and forget the stored tokens."""
    from devteam import cli_client

    _client(cli_client.logout(url))


AGENT_TYPES = ["research", "codebase_analyzer", "frontend", "backend", "reviewer", "delivery"]


@app.command()
def submit(
    task: Annotated[str, typer.Argument(help="What to do (10-10000 characters); - reads stdin.")],
    agent: Annotated[
        str | None,
        typer.Option(
            help=f"Agent type: {', '.join(AGENT_TYPES)}; default: the TeamLeader decides."
        ),
    ] = None,
    complexity: Annotated[int, typer.Option(min=1, max=10, help="1-10.")] = 3,
    project: Annotated[
        str | None, typer.Option(help="Project: a repository in workspaces/.")
    ] = None,
    priority: Annotated[int, typer.Option(min=1, max=10, help="1-10; 10 runs first.")] = 5,
    task_type: Annotated[str, typer.Option(help="feature, bugfix, research, ...")] = "feature",
    approve_first: Annotated[
        bool, typer.Option("--approve-first", help="Stop at the plan until approved.")
    ] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Follow it live until it ends.")] = False,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Submitting again with the same key returns the same task.")
    ] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Submit a task. With --watch the exit code is the task's outcome."""
    from devteam import cli_client

    if agent is not None and agent not in AGENT_TYPES:
        raise typer.BadParameter(f"one of {', '.join(AGENT_TYPES)}", param_hint="--agent")
    text = sys.stdin.read() if task == "-" else task
    body: dict[str, Any] = {
        "task": text,
        "complexity": complexity,
        "priority": priority,
        "task_type": task_type,
        "require_approval": approve_first,
    }
    if agent:
        body["agent_type"] = agent
    if project:
        body["project_id"] = project
    _client(
        cli_client.submit(
            url, body, watch_it=watch, as_json=as_json, idempotency_key=idempotency_key
        )
    )


@app.command()
def watch(
    task_id: Annotated[str, typer.Argument(help="The task to follow.")],
    url: UrlOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print each event as one JSON line (NDJSON).")
    ] = False,
) -> None:
    """Follow a task live until it ends; resumes by itself after a dropped connection.

    Exit code: 0 completed, 1 failed, 3 cancelled, 4 the service refused or is unreachable.
    """
    from devteam import cli_client

    _client(cli_client.watch(url, task_id, as_json=as_json))


tasks_app = typer.Typer(help="List, show, cancel and approve tasks.", no_args_is_help=True)
app.add_typer(tasks_app, name="tasks")


@tasks_app.command("list")
def tasks_list(
    status: Annotated[str | None, typer.Option(help="Only tasks in this status.")] = None,
    project: Annotated[str | None, typer.Option(help="Only this project's tasks.")] = None,
    agent: Annotated[str | None, typer.Option(help="Only this agent type's tasks.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    cursor: Annotated[str | None, typer.Option(help="Continue a listing.")] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Your tasks (everyone's for operators), newest first."""
    from devteam import cli_client

    filters = {
        "status": status,
        "project_id": project,
        "agent_type": agent,
        "limit": limit,
        "cursor": cursor,
    }
    _client(cli_client.list_tasks(url, filters, as_json=as_json))


@tasks_app.command("show")
def tasks_show(
    task_id: Annotated[str, typer.Argument()],
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """A task with its subtasks, usage, error and result."""
    from devteam import cli_client

    _client(cli_client.show_task(url, task_id, as_json=as_json))


@tasks_app.command("cancel")
def tasks_cancel(task_id: Annotated[str, typer.Argument()], url: UrlOption = None) -> None:
    """Cancel a task and everything under it."""
    from devteam import cli_client

    _client(cli_client.cancel_task(url, task_id))


@tasks_app.command("approve")
def tasks_approve(
    task_id: Annotated[str, typer.Argument()],
    reject: Annotated[bool, typer.Option("--reject", help="Reject the plan instead.")] = False,
    comment: Annotated[str | None, typer.Option(help="Why.")] = None,
    url: UrlOption = None,
) -> None:
    """Approve (or --reject) the plan of a task awaiting approval."""
    from devteam import cli_client

    _client(cli_client.approve_task(url, task_id, not reject, comment))


projects_app = typer.Typer(
    help="Projects: git repositories the agents work on (cloned by the service).",
    no_args_is_help=True,
)
app.add_typer(projects_app, name="projects")

ProjectName = Annotated[str, typer.Argument(help="The project's name (its project_id).")]


@projects_app.command("add")
def projects_add(
    name: ProjectName,
    git_url: Annotated[str, typer.Argument(help="git://, https:// or ssh:// URL.")],
    branch: Annotated[str | None, typer.Option(help="Branch to clone.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the clone ends.")] = False,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add a project; the service clones it in the background (admin, operator)."""
    from devteam import cli_client

    _client(cli_client.add_project(url, name, git_url, branch, wait=wait, as_json=as_json))


@projects_app.command("list")
def projects_list(url: UrlOption = None, as_json: JsonOption = False) -> None:
    """Every project: cloned ones and repositories placed in the workspaces folder by hand."""
    from devteam import cli_client

    _client(cli_client.list_projects(url, as_json=as_json))


@projects_app.command("show")
def projects_show(name: ProjectName, url: UrlOption = None, as_json: JsonOption = False) -> None:
    """A project's state, last commit, error and detected checks."""
    from devteam import cli_client

    _client(cli_client.show_project(url, name, refresh=False, as_json=as_json))


@projects_app.command("refresh")
def projects_refresh(name: ProjectName, url: UrlOption = None, as_json: JsonOption = False) -> None:
    """Fetch the project's remote and fast-forward its checkout."""
    from devteam import cli_client

    _client(cli_client.show_project(url, name, refresh=True, as_json=as_json))


@projects_app.command("remove")
def projects_remove(name: ProjectName, url: UrlOption = None) -> None:
    """Remove a project and its clone (refused while its tasks run)."""
    from devteam import cli_client

    _client(cli_client.remove_project(url, name))
