"""`devteam login --sso` against a real OpenID provider: device code, and code + PKCE.

The provider is `oidc-provider` on loopback; the "user at the browser" is the
test, confirming the device code or following the authorization redirects.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.auth import security_config
from tests.e2e.test_cli_client import Cli
from tests.live import LiveServer
from tests.oidc import AUDIENCE, OidcProviders, Provider

pytestmark = pytest.mark.slow

ROLE_MAP = {"devteam-devs": "developer"}


@pytest.fixture(scope="module")
def providers() -> Iterator[OidcProviders]:
    """The first offers the device flow; the second only the browser's code flow."""
    with OidcProviders.start(True, False) as running:
        yield running


@pytest.fixture
def sso_server(make_live_server: Callable[..., Any]) -> Callable[..., Any]:
    @asynccontextmanager
    async def make(idp: Provider) -> AsyncIterator[LiveServer]:
        async with make_live_server(
            security_config(),
            oidc_issuer=idp.issuer,
            oidc_audience=AUDIENCE,
            oidc_role_map=ROLE_MAP,
            oidc_allow_http=True,
            oidc_client_id="devteam-cli",
        ) as server:
            yield server

    return make


async def read_line_with(process: asyncio.subprocess.Process, needle: str) -> str:
    assert process.stdout is not None
    async with asyncio.timeout(30):
        while True:
            line = (await process.stdout.readline()).decode()
            assert line, f"the command ended before printing {needle!r}"
            if needle in line:
                return line


async def finish(process: asyncio.subprocess.Process) -> tuple[int, str, str]:
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_device_code_sign_in_then_commands_renew_at_the_provider(
    sso_server: Callable[..., Any], providers: OidcProviders, tmp_path: Path
) -> None:
    idp = providers[0]
    idp.account("ada", groups=["devteam-devs"])
    async with sso_server(idp) as server:
        cli = Cli(tmp_path, server.url)
        process = await cli.start("login", "--sso")
        line = await read_line_with(process, "To sign in, open ")
        url = line.split("To sign in, open ", 1)[1].strip()
        assert "user_code=" in url
        await asyncio.to_thread(idp.confirm_device_code, url, "ada")
        code, out, err = await finish(process)
        assert code == 0, err
        assert f"as ada (developer) through {idp.issuer}" in out

        stored = json.loads(cli.credentials.read_text())
        assert stored["sso"] is True
        assert stored["refresh_token"]
        listed = await cli.run("tasks", "list")
        assert listed.code == 0, listed.stderr

        # An expired access token is renewed with the provider's refresh token.
        stored["expires_at"] = 0
        cli.credentials.write_text(json.dumps(stored))
        again = await cli.run("tasks", "list")
        assert again.code == 0, again.stderr
        renewed = json.loads(cli.credentials.read_text())
        assert renewed["access_token"] != stored["access_token"]
        assert renewed["expires_at"] > 0


async def test_browser_sign_in_with_pkce_where_no_device_code_is_offered(
    sso_server: Callable[..., Any], providers: OidcProviders, tmp_path: Path
) -> None:
    idp = providers[1]
    assert "device_authorization_endpoint" not in idp.metadata()
    idp.account("grace", groups=["devteam-devs"])
    async with sso_server(idp) as server:
        cli = Cli(tmp_path, server.url)
        process = await cli.start("login", "--sso", "--no-browser")
        await read_line_with(process, "visit:")
        assert process.stdout is not None
        authorization_url = (await process.stdout.readline()).decode().strip()
        assert "code_challenge_method=S256" in authorization_url
        idp.login("grace")
        redirect_uri = httpx.URL(authorization_url).params["redirect_uri"]
        assert redirect_uri.startswith("http://127.0.0.1:")  # a loopback redirect (RFC 8252)
        redirect = await asyncio.to_thread(idp.authorize, authorization_url, redirect_uri)
        async with httpx.AsyncClient() as browser:
            landing = await browser.get(redirect)
        assert "Signed in to DevTeam" in landing.text
        code, out, err = await finish(process)
        assert code == 0, err
        assert "as grace (developer)" in out


async def test_sso_login_to_a_service_without_it_says_so(
    make_live_server: Callable[..., Any], tmp_path: Path
) -> None:
    async with make_live_server() as server:
        result = await Cli(tmp_path, server.url).run("login", "--sso")
    assert result.code != 0
    assert "no single sign-on configured" in result.stderr
