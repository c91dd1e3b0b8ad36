"""`devteam users ...` and the README's first steps: make an admin, log in, call /users/me."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.processes import clean_env, devteam, free_port

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery staple"


def run(
    tmp_path: Path, *args: str, stdin: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        devteam(*args),
        cwd=tmp_path,
        env=clean_env(**env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_create_and_list_users(tmp_path: Path) -> None:
    created = run(
        tmp_path,
        "users", "create", "--username", "Admin", "--role", "admin", "--password-stdin",
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("created user admin with role admin (id ")
    assert PASSWORD not in created.stdout + created.stderr

    # Without a terminal there is nobody to prompt: the command says what to do instead.
    prompted = run(
        tmp_path,
        "users", "create", "--username", "viewer1", "--role", "viewer",
        stdin=f"{PASSWORD}\n{PASSWORD}\n",
    )  # fmt: skip
    assert prompted.returncode == 2
    assert prompted.stderr == (
        "devteam: no terminal to ask for the password: use --password-stdin\n"
    )
    viewer = run(
        tmp_path,
        "users", "create", "--username", "viewer1", "--role", "viewer", "--password-stdin",
        stdin=f"{PASSWORD}\n",
    )  # fmt: skip
    assert viewer.returncode == 0, viewer.stderr
    # Neither migration nor audit lines: a command prints what it did, and -v shows more.
    assert created.stderr == viewer.stderr == ""

    listed = run(tmp_path, "users", "list")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert rows[0][:3] == ["USERNAME", "ROLE", "ACTIVE"]
    assert [row[:3] for row in rows[1:]] == [
        ["admin", "admin", "yes"],
        ["viewer1", "viewer", "yes"],
    ]


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["--username", "admin", "--role", "admin"], PASSWORD, "user 'admin' already exists"),
        (["--username", "bob", "--role", "viewer"], "short", "password: at least 12 characters"),
        (["--username", "b b", "--role", "viewer"], PASSWORD, "username: 3-64 letters"),
    ],
    ids=["exists", "short-password", "bad-username"],
)
def test_create_refusals_are_one_line(
    tmp_path: Path, args: list[str], stdin: str, message: str
) -> None:
    if "already exists" in message:
        first = run(
            tmp_path,
            "users", "create", "--username", "admin", "--role", "admin", "--password-stdin",
            stdin=PASSWORD,
        )  # fmt: skip
        assert first.returncode == 0, first.stderr
    result = run(tmp_path, "users", "create", *args, "--password-stdin", stdin=stdin + "\n")
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("devteam:")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"devteam: {message}")


def test_production_without_a_secret_does_not_start(tmp_path: Path) -> None:
    result = run(tmp_path, "serve", "--port", str(free_port()), DEVTEAM_ENV="production")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(
        "devteam: environment: DEVTEAM_JWT_SECRET: required in production"
    )


def test_readme_first_steps(tmp_path: Path) -> None:
    """Create an admin with the CLI, log in over HTTP, call /api/v1/users/me."""
    created = run(
        tmp_path,
        "users", "create", "--username", "admin", "--role", "admin", "--password-stdin",
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        devteam("serve", "--port", str(port)),
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60  # start-up on a busy machine
        while True:
            try:
                httpx.get(f"{base}/health/live", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, "the service stopped"
                assert time.monotonic() < deadline, "the service did not come up"
                time.sleep(0.1)
        token = httpx.post(
            f"{base}/api/v1/auth/token", data={"username": "admin", "password": PASSWORD}
        )
        assert token.status_code == 200, token.text
        access = token.json()["access_token"]
        me = httpx.get(f"{base}/api/v1/users/me", headers={"Authorization": f"Bearer {access}"})
        assert me.status_code == 200, me.text
        assert me.json()["username"] == "admin"
        assert me.json()["role"] == "admin"
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=20)[0].decode()
    assert "DEVTEAM_JWT_SECRET is not set" in output  # development: a generated secret
    assert PASSWORD not in output
    assert access not in output
