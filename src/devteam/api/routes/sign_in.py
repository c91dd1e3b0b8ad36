"""How to sign in here: passwords, and the identity provider when one is configured.

Clients (the CLI's `login --sso`, the web UI) ask this before signing in, so they
need no configuration of their own beyond the service's URL.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from devteam.api.docs import error_responses
from devteam.api.security import SecurityDep
from devteam.domain.errors import ErrorCode

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


class IdentityProviderOut(BaseModel):
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


class SignInMethodsOut(BaseModel):
    password: bool = True
    """Local users sign in with `POST /api/v1/auth/token`."""
    identity_provider: IdentityProviderOut | None = None
    """Single sign-on, when configured."""


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
        )
    )
