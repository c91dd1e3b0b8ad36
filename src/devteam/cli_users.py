"""`devteam users ...`: manage users directly in the database, like `devteam migrate`.

This is how the first admin is made: `devteam users create --username admin --role admin`.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from devteam.domain.enums import Role
from devteam.domain.errors import DevTeamError

if TYPE_CHECKING:
    from devteam.domain.users import User
    from devteam.settings import AppConfig, Settings
    from devteam.storage import Store

users_app = typer.Typer(
    help="Manage users directly in the database (no running service needed).",
    no_args_is_help=True,
)


def _cli_actor() -> str:
    """How the audit log names a user made from the command line."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli"


# Storage and security are imported when a command runs, so `devteam --help` stays quick.


async def _open(settings: Settings) -> Store:
    from devteam.storage import Database, Store
    from devteam.storage.migrate import upgrade

    db = Database(settings.database_url)
    if settings.migrate_on_start:
        await upgrade(db)
    return Store(db)


async def _create(
    settings: Settings, config: AppConfig, username: str, password: str, role: Role
) -> User:
    from devteam.security.accounts import Accounts
    from devteam.security.audit import Auditor
    from devteam.security.passwords import Passwords

    store = await _open(settings)
    try:
        accounts = Accounts(store, Passwords(config.security.passwords))
        return await accounts.create(
            username, password, role, auditor=Auditor(store), actor=_cli_actor()
        )
    finally:
        await store.close()


async def _list(settings: Settings) -> list[User]:
    store = await _open(settings)
    try:
        users: list[User] = []
        async with store.read() as tx:
            while page := await tx.users.list(
                limit=500, after_username=users[-1].username if users else None
            ):
                users.extend(page)
        return users
    finally:
        await store.close()


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            from devteam.cli import fail

            fail("no terminal to ask for the password: use --password-stdin")
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@users_app.command("create")
def create(
    username: Annotated[str, typer.Option(help="Login name (stored in lower case).")],
    role: Annotated[Role, typer.Option(help="What the user may do.")],
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read the password from the first line of stdin."),
    ] = False,
) -> None:
    """Create a user; the password is prompted for twice, or read with --password-stdin."""
    from devteam.cli import fail, load

    settings, config = load()
    password = _read_password(password_stdin)
    try:
        user = asyncio.run(_create(settings, config, username, password, role))
    except DevTeamError as exc:
        fail(exc.message, code=1)
    typer.echo(f"created user {user.username} with role {user.role} (id {user.id})")


@users_app.command("list")
def list_users() -> None:
    """List users: username, role, active or not, creation time (UTC) and id."""
    from devteam.cli import load

    settings, _ = load()
    users = asyncio.run(_list(settings))
    if not users:
        typer.echo("no users yet: create one with `devteam users create`")
        return
    typer.echo(f"{'USERNAME':<24} {'ROLE':<10} {'ACTIVE':<7} {'CREATED (UTC)':<20} ID")
    for user in users:
        created = user.created_at.strftime("%Y-%m-%d %H:%M:%S")
        active = "yes" if user.is_active else "no"
        typer.echo(f"{user.username:<24} {user.role:<10} {active:<7} {created:<20} {user.id}")
