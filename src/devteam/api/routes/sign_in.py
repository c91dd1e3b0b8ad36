"""How to sign in here: passwords, and the identity provider when one is configured.

Clients (the CLI's `login --sso`, the web UI) ask this before signing in, so they
need no configuration of their own beyond the service's URL. The web UI signs in
with the authorization code flow and PKCE: the browser goes to the provider and
back, and hands the code and its verifier to `POST /api/v1/auth/oidc/token`, which
trades them at the provider (so the page never talks to the provider itself).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from devteam.api.docs import error_responses
from devteam.api.security import SecurityDep, request_origin
from devteam.domain.errors import ErrorCode, NotFound
from devteam.security.oidc import OidcAuthenticator, ProviderTokens
from devteam.security.ratelimit import RateLimitScope

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


class IdentityProviderOut(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    issuer: str
    """The OpenID provider's issuer; its discovery document is at
    `<issuer>/.well-known/openid-configuration`."""
    client_id: str | None = None
    """The public client to sign in with (device code, or authorization code with PKCE);
    null when the service only accepts tokens obtained elsewhere."""
    audience: str
    """The `aud` access tokens must carry; ask for it as the `resource`/`audience`."""
    scopes: str
    """Scopes to ask for."""
    token_type: Literal["access_token", "id_token"] = "access_token"
    """Which of the provider's tokens to send as `Authorization: Bearer`."""
    authorization_endpoint: str | None = None
    """Where a browser signs in (null while the provider cannot be reached)."""


class SignInMethodsOut(BaseModel):
    model_config = ConfigDict(
        use_attribute_docstrings=True,
        json_schema_extra={
            "examples": [
                {
                    "password": True,
                    "identity_provider": {
                        "issuer": "https://idp.example.com/realms/acme",
                        "client_id": "devteam",
                        "audience": "devteam-api",
                        "scopes": "openid profile email offline_access",
                        "token_type": "access_token",
                        "authorization_endpoint": "https://idp.example.com/realms/acme/auth",
                    },
                }
            ]
        },
    )

    password: bool = True
    """Local users sign in with `POST /api/v1/auth/token`."""
    identity_provider: IdentityProviderOut | None = None
    """Single sign-on, when configured."""


class CodeIn(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    code: Annotated[str, Field(min_length=1, max_length=2048)]
    """The authorization code the provider sent back to the page."""
    code_verifier: Annotated[str, Field(min_length=43, max_length=128)]
    """The PKCE verifier the page made before it went to the provider (RFC 7636)."""
    redirect_uri: Annotated[str, Field(min_length=1, max_length=2048)]
    """The redirect URI the page sent to the provider, exactly."""


class ProviderRefreshIn(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    refresh_token: Annotated[str, Field(min_length=1, max_length=8192)]
    """The provider's refresh token."""


class ProviderTokensOut(BaseModel):
    model_config = ConfigDict(
        use_attribute_docstrings=True,
        json_schema_extra={
            "examples": [
                {
                    "access_token": "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiIuLi4ifQ.c2ln",
                    "refresh_token": "8xLOxBtZp8",
                    "token_type": "bearer",
                    "expires_in": 300,
                }
            ]
        },
    )

    access_token: str
    """The provider's token to send as `Authorization: Bearer`."""
    refresh_token: str | None
    """The provider's refresh token, for `POST /api/v1/auth/oidc/refresh` (null when the
    provider gave none)."""
    token_type: Literal["bearer"] = "bearer"
    """Always `bearer`."""
    expires_in: int
    """Seconds until the access token expires."""

    @classmethod
    def of(cls, tokens: ProviderTokens) -> ProviderTokensOut:
        return cls(
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            expires_in=tokens.expires_in,
        )


async def _provider(security: SecurityDep, request: Request) -> OidcAuthenticator:
    """The identity provider, for a call that goes to it: counted like a login attempt
    from the caller's address (404 without single sign-on)."""
    if security.oidc is None:
        raise NotFound("single sign-on is not configured here")
    await security.rate_limiter.hit(
        RateLimitScope.LOGIN_IP, request_origin(request).client_ip or "unknown"
    )
    return security.oidc


@router.get(
    "/providers",
    operation_id="sign_in_methods",
    summary="How to sign in",
    responses=error_responses(ErrorCode.SERVICE_UNAVAILABLE),
)
async def sign_in_methods(security: SecurityDep) -> SignInMethodsOut:
    """The ways to sign in: local passwords, and the identity provider when configured."""
    oidc = security.oidc
    if oidc is None:
        return SignInMethodsOut()
    config = oidc.config
    return SignInMethodsOut(
        identity_provider=IdentityProviderOut(
            issuer=oidc.issuer,
            client_id=config.client_id,
            audience=config.audience or "",
            scopes=config.scopes,
            token_type=config.token_type,
            authorization_endpoint=await oidc.authorization_endpoint(),
        )
    )


@router.post(
    "/oidc/token",
    operation_id="exchange_provider_code",
    summary="Trade a provider's authorization code for its tokens",
    responses=error_responses(
        ErrorCode.VALIDATION_ERROR,
        ErrorCode.UNAUTHORIZED,
        ErrorCode.FORBIDDEN,
        ErrorCode.NOT_FOUND,
        ErrorCode.RATE_LIMITED,
        ErrorCode.SERVICE_UNAVAILABLE,
    ),
)
async def exchange_provider_code(
    body: CodeIn, security: SecurityDep, request: Request
) -> ProviderTokensOut:
    """For the web UI's sign-in (authorization code with PKCE). The tokens are checked
    like any bearer token before they are handed over, so a user with no role gets 403
    here, not after."""
    oidc = await _provider(security, request)
    tokens = await oidc.exchange_code(body.code, body.code_verifier, body.redirect_uri)
    await security.authenticate(
        tokens.access_token, auditor=security.auditor.bind(request_origin(request))
    )
    return ProviderTokensOut.of(tokens)


@router.post(
    "/oidc/refresh",
    operation_id="refresh_provider_tokens",
    summary="Renew a provider's tokens",
    responses=error_responses(
        ErrorCode.VALIDATION_ERROR,
        ErrorCode.UNAUTHORIZED,
        ErrorCode.NOT_FOUND,
        ErrorCode.RATE_LIMITED,
        ErrorCode.SERVICE_UNAVAILABLE,
    ),
)
async def refresh_provider_tokens(
    body: ProviderRefreshIn, security: SecurityDep, request: Request
) -> ProviderTokensOut:
    """Renew the web UI's single sign-on tokens with the provider's refresh token."""
    oidc = await _provider(security, request)
    return ProviderTokensOut.of(await oidc.refresh(body.refresh_token))
