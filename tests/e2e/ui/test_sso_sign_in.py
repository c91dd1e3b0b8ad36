"""The web UI signs in at a real OpenID provider: authorization code with PKCE.

The browser goes to the provider (`oidc-provider` on loopback, whose sign-in is
automatic for the account the test names) and back to `/ui/`, which trades the
code through the service.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from devteam.app import create_app
from devteam.settings import Settings
from tests.auth import JWT_SECRET, REPO, security_config
from tests.e2e.ui.agents import TeamScript
from tests.e2e.ui.conftest import UiServer
from tests.live import serve
from tests.oidc import AUDIENCE, OidcProviders, Provider

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]


@pytest.fixture(scope="module")
def idp() -> Iterator[Provider]:
    with OidcProviders.start(False) as providers:
        yield providers[0]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sso_ui(
    tmp_path_factory: pytest.TempPathFactory, idp: Provider
) -> AsyncIterator[UiServer]:
    tmp = tmp_path_factory.mktemp("sso-ui")
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp / 'app.db'}",
        config_dir=REPO / "config",
        prompts_dir=REPO / "system_prompts",
        workspaces_root=tmp / "workspaces",
        redis_url=None,
        jwt_secret=JWT_SECRET,
        oidc_issuer=idp.issuer,
        oidc_audience=AUDIENCE,
        oidc_role_map={"devteam-devs": "developer"},
        oidc_allow_http=True,
        oidc_client_id="devteam-cli",
        _env_file=None,  # type: ignore[call-arg]
    )
    script = TeamScript()
    app = create_app(settings, security_config(), executors=True, agents=script.agents())
    async with serve(app, settings) as live:
        yield UiServer(live, script)


async def sign_in(page: Any, server: UiServer, idp: Provider) -> None:
    await page.goto(server.url + "/ui")
    host = idp.issuer.removeprefix("http://")
    await page.get_by_role("button", name=f"Sign in with {host}").click()


async def test_signing_in_with_the_identity_provider(
    sso_ui: UiServer, idp: Provider, page: Any, accessible: Any
) -> None:
    await page.goto(sso_ui.url + "/ui")
    await page.get_by_label("Password").wait_for()  # local users keep their passwords
    await accessible(page)
    idp.account("uma", groups=["devteam-devs"])
    idp.login("uma")
    await sign_in(page, sso_ui, idp)
    await page.get_by_role("heading", name="Tasks", exact=True).wait_for()
    assert await page.locator("#who").text_content() == "uma (developer)"
    assert "code=" not in page.url  # the code is gone from the address bar

    # An access token about to expire is renewed at the provider, through the service.
    await page.evaluate(
        """() => {
          const s = JSON.parse(sessionStorage.getItem('devteam.session'));
          s.expires_at = 0;
          sessionStorage.setItem('devteam.session', JSON.stringify(s));
        }"""
    )
    async with page.expect_response("**/api/v1/auth/oidc/refresh") as renewal:
        await page.get_by_role("link", name="Submit", exact=True).click()
    assert (await renewal.value).status == 200
    await page.get_by_role("heading", name="Submit a task").wait_for()


async def test_a_user_in_no_mapped_group_is_told_why(
    sso_ui: UiServer, idp: Provider, page: Any
) -> None:
    idp.account("zed", groups=["marketing"])
    idp.login("zed")
    await sign_in(page, sso_ui, idp)
    notice = page.locator("#banner")
    await notice.filter(has_text="no group").wait_for()
    await page.get_by_label("Password").wait_for()
    assert await page.evaluate("sessionStorage.getItem('devteam.session')") is None
