"""`devteam login --sso`: sign in at the organisation's identity provider from a terminal.

The service says which provider it trusts (`GET /api/v1/auth/providers`); the
provider's discovery document says what it offers. Where it offers the device
authorization grant (RFC 8628) that is used: the command prints a URL and a code,
the user confirms them in any browser, on any machine. Otherwise the authorization
code flow with PKCE (RFC 7636) and a loopback redirect (RFC 8252): the command
listens on 127.0.0.1 on a free port, opens the browser at the provider, and takes
the code from the redirect. PKCE's challenge and the state come from Authlib.

The tokens are the provider's: the access token is sent to the service as it is,
and renewed with the provider's refresh token through the service
(`POST /api/v1/auth/oidc/refresh`), which trades it at the provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
CODE_FLOW_TIMEOUT_S = 300.0


class SignInError(Exception):
    """Signing in at the provider did not work; the message says why, in one line."""


@dataclass(frozen=True)
class Provider:
    """What a client needs to sign in at the service's identity provider."""

    issuer: str
    client_id: str
    audience: str
    scopes: str
    token_endpoint: str
    authorization_endpoint: str | None
    device_authorization_endpoint: str | None
    token_type: str = "access_token"
    """Which token the service takes as the bearer (`access_token` or `id_token`)."""


async def discover(http: httpx.AsyncClient, service_url: str) -> Provider:
    """The provider the service at `service_url` trusts, and its endpoints."""
    answer = await _get_json(http, f"{service_url}/api/v1/auth/providers", "the service")
    idp = answer.get("identity_provider")
    if not isinstance(idp, dict):
        raise SignInError(f"{service_url} has no single sign-on configured: log in with a password")
    if not idp.get("client_id"):
        raise SignInError(
            f"{service_url} accepts provider tokens but names no client for signing in "
            "(set DEVTEAM_OIDC_CLIENT_ID there)"
        )
    issuer = str(idp["issuer"])
    metadata = await _get_json(
        http, issuer.rstrip("/") + "/.well-known/openid-configuration", "the identity provider"
    )
    if metadata.get("issuer") != issuer:
        raise SignInError("the identity provider's discovery document names another issuer")
    return Provider(
        issuer=issuer,
        client_id=str(idp["client_id"]),
        audience=str(idp["audience"]),
        scopes=str(idp.get("scopes") or "openid"),
        token_endpoint=str(metadata["token_endpoint"]),
        authorization_endpoint=metadata.get("authorization_endpoint"),
        device_authorization_endpoint=metadata.get("device_authorization_endpoint"),
        token_type=str(idp.get("token_type") or "access_token"),
    )


async def device_flow(
    http: httpx.AsyncClient, provider: Provider, show: Callable[[str, str, str | None], None]
) -> dict[str, Any]:
    """RFC 8628: ask for a device code, `show(url, user_code, url_with_code)`, poll for tokens."""
    assert provider.device_authorization_endpoint is not None
    grant = await _post_form(
        http,
        provider.device_authorization_endpoint,
        {"client_id": provider.client_id, "scope": provider.scopes, "resource": provider.audience},
    )
    show(grant["verification_uri"], grant["user_code"], grant.get("verification_uri_complete"))
    interval = float(grant.get("interval", 5))
    deadline = time.monotonic() + float(grant.get("expires_in", 600))
    while time.monotonic() < deadline:
        await asyncio.sleep(interval)
        response = await http.post(
            provider.token_endpoint,
            data={
                "grant_type": DEVICE_GRANT,
                "device_code": grant["device_code"],
                "client_id": provider.client_id,
                "resource": provider.audience,
            },
        )
        if response.is_success:
            return _tokens(response.json())
        error = _error_field(response)
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval += 5
            continue
        raise SignInError(f"the identity provider refused the sign-in: {_error_code(response)}")
    raise SignInError("the code was not confirmed in time: run devteam login --sso again")


async def code_flow(
    http: httpx.AsyncClient,
    provider: Provider,
    show: Callable[[str], None],
    *,
    open_browser: bool = True,
    timeout_s: float = CODE_FLOW_TIMEOUT_S,
) -> dict[str, Any]:
    """Authorization code with PKCE and a loopback redirect (RFC 8252)."""
    if provider.authorization_endpoint is None:
        raise SignInError("the identity provider offers neither a device code nor a browser login")
    verifier = generate_token(64)
    state = generate_token(24)
    received: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()

    async def callback(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            request_line = (await reader.readline()).decode("latin-1")
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            target = request_line.split(" ")[1] if request_line.count(" ") >= 2 else "/"
            query = {k: v[0] for k, v in parse_qs(urlsplit(target).query).items()}
            ok = query.get("state") == state and "code" in query
            text = (
                "Signed in to DevTeam. You may close this window."
                if ok
                else "DevTeam could not sign you in; see the terminal."
            )
            body = f"<!DOCTYPE html><title>DevTeam</title><p>{text}</p>".encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            if urlsplit(target).path == "/callback" and not received.done():
                received.set_result(query)
        writer.close()

    server = await asyncio.start_server(callback, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    redirect_uri = f"http://127.0.0.1:{port}/callback"
    url = (
        provider.authorization_endpoint
        + "?"
        + urlencode(
            {
                "client_id": provider.client_id,
                "response_type": "code",
                "redirect_uri": redirect_uri,
                "scope": provider.scopes,
                "state": state,
                "code_challenge": create_s256_code_challenge(verifier),
                "code_challenge_method": "S256",
                "resource": provider.audience,
            }
        )
    )
    try:
        show(url)
        if open_browser:
            with contextlib.suppress(Exception):
                webbrowser.open(url)
        try:
            query = await asyncio.wait_for(received, timeout_s)
        except TimeoutError:
            raise SignInError("no answer from the browser in time") from None
    finally:
        server.close()
        await server.wait_closed()
    if query.get("state") != state:
        raise SignInError("the provider's answer does not match this sign-in (state)")
    if "code" not in query:
        raise SignInError(f"the identity provider refused the sign-in: {query.get('error', '?')}")
    return _tokens(
        await _post_form(
            http,
            provider.token_endpoint,
            {
                "grant_type": "authorization_code",
                "code": query["code"],
                "redirect_uri": redirect_uri,
                "client_id": provider.client_id,
                "code_verifier": verifier,
                "resource": provider.audience,
            },
        )
    )


async def _get_json(http: httpx.AsyncClient, url: str, who: str) -> dict[str, Any]:
    try:
        response = await http.get(url)
    except httpx.TransportError as exc:
        raise SignInError(f"cannot reach {who} at {url}: {exc}") from None
    if response.is_error:
        raise SignInError(f"{who} answered {response.status_code} at {url}")
    try:
        document = response.json()
    except ValueError:
        raise SignInError(f"{who} did not answer JSON at {url}") from None
    if not isinstance(document, dict):
        raise SignInError(f"{who} did not answer a JSON object at {url}")
    return document


async def _post_form(http: httpx.AsyncClient, url: str, form: dict[str, str]) -> dict[str, Any]:
    try:
        response = await http.post(url, data=form)
    except httpx.TransportError as exc:
        raise SignInError(f"cannot reach the identity provider: {exc}") from None
    if response.is_error:
        raise SignInError(f"the identity provider refused: {_error_code(response)}")
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise SignInError("the identity provider did not answer a JSON object")
    return body


def bearer_of(tokens: dict[str, Any], token_type: str) -> dict[str, Any]:
    """The provider's answer with the token the service takes as `access_token`."""
    token = tokens.get(token_type)
    if not isinstance(token, str):
        raise SignInError(f"the identity provider's answer has no {token_type}")
    return {**tokens, "access_token": token}


def _tokens(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        raise SignInError("the identity provider's answer has no access token")
    return body


def _error_field(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", ""))
    except (ValueError, AttributeError):
        return ""


def _error_code(response: httpx.Response) -> str:
    try:
        body = response.json()
        return str(body.get("error_description") or body.get("error") or response.status_code)
    except (ValueError, AttributeError):
        return str(response.status_code)
