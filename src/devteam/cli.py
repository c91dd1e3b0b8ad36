"""The `devteam` command line."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from devteam.cli_users import users_app
from devteam.domain.errors import ConfigError
from devteam.observability.logging import configure_logging
from devteam.settings import AppConfig, Settings, load_config, load_settings

app = typer.Typer(
    name="devteam",
    help="DevTeam: run an AI development team.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one line to stderr and exit."""
    typer.echo(f"devteam: {message}", err=True)
    raise typer.Exit(code)


def load(**overrides: Any) -> tuple[Settings, AppConfig]:
    """Settings and YAML config, or a one-line reason and exit code 2."""
    try:
        settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
        config = load_config(settings.config_dir)
    except ConfigError as exc:
        fail(exc.message)
    fmt = settings.log_format
    if fmt == "auto":
        fmt = "json" if settings.is_production else "console"
    configure_logging(level=settings.log_level, fmt=fmt)
    return settings, config


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
) -> None:
    """Start the API (embedded defaults: SQLite and the in-process broker)."""
    import uvicorn

    from devteam.app import create_app

    settings, config = load(host=host, port=port, migrate_on_start=migrate)
    if not executors and settings.redis_url is None:
        fail("--no-executors needs DEVTEAM_REDIS_URL: workers reach the work through Redis")
    try:
        application = create_app(settings, config, executors=executors)
    except ConfigError as exc:
        fail(exc.message)
    server = uvicorn.Server(
        uvicorn.Config(
            application,
            host=settings.host,
            port=settings.port,
            log_config=None,
            lifespan="on",
            proxy_headers=True,
            server_header=False,
            ws_max_size=1024 * 1024,
        )
    )
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
) -> None:
    """Run agent work only (no API), on Postgres and Redis next to `serve --no-executors`.

    SIGTERM (or Ctrl-C) stops taking work, lets running attempts finish within
    DEVTEAM_SHUTDOWN_GRACE_S and hands the rest back to the queue.
    """
    settings, config = load(host=host)
    if concurrency is not None:
        settings = settings.model_copy(update={"executor_concurrency": concurrency})
    if settings.redis_url is None:
        fail("a worker needs DEVTEAM_REDIS_URL: the API hands it work through Redis")
    from devteam.worker import run_worker

    asyncio.run(run_worker(settings, config, port))


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

    # stdout carries the protocol over stdio: logs go to stderr only.
    configure_logging(level="WARNING", fmt="console", stream=sys.stderr)
    if not root.is_dir():
        fail(f"--root {root}: not a folder")
    server = create_workspace_server(root)
    if http:
        asyncio.run(serve_http(server, host=host, port=port))
    else:
        server.run("stdio")
