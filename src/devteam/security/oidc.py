"""Single sign-on: access tokens of an OpenID Connect provider, and the users behind them.

With `oidc.issuer` and `oidc.audience` configured (or `DEVTEAM_OIDC_*`), a bearer
token whose `iss` is the provider is checked here instead of as a local token:

- The provider is found through discovery (`/.well-known/openid-configuration`),
  whose `issuer` must be the configured one, and its keys through `jwks_uri`.
- Keys are cached. A token naming a `kid` not in the cache fetches the keys again,
  at most once per `jwks_refresh_interval_s`, so a key rotation needs no restart and
  made-up `kid`s cannot make the service hammer the provider.
- Only the configured asymmetric algorithms pass (RS256, ES256, PS256 by default):
  `none` and HMAC never do, so a token "signed" with the provider's public key as an
  HMAC secret is refused. The key's own `alg`, when it has one, must match too.
- `iss`, `aud`, `exp` and `sub` are required; `exp` and `nbf` are checked with a small
  leeway. The signature is checked by PyJWT; nothing here does cryptography.

A user is found by (issuer, subject), never by username. One seen for the first
time is created (username from `preferred_username`, else `email`, else the
subject), with the role its groups map to; the role is read again from every token,
so a change of group takes effect with the next token. A user in no mapped group is
refused with 403 and not created; a locally deactivated user stays out whatever the
provider says. Sign-ins (the first use of a token in a process), creations and role
changes go to the audit log.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import httpx
import jwt
from pydantic import ValidationError

from devteam.domain.audit import AuditOutcome
from devteam.domain.enums import Role
from devteam.domain.errors import (
    ConfigError,
    Conflict,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    TokenExpired,
    Unauthorized,
)
from devteam.domain.users import User
from devteam.observability.logging import get_logger
from devteam.security.audit import AuditAction, Auditor
from devteam.security.rbac import Principal, RolePermissions
from devteam.settings import Settings
from devteam.settings.security import OidcConfig
from devteam.storage import Store

log = get_logger(__name__)

ROLE_RANK: dict[Role, int] = {Role.VIEWER: 0, Role.DEVELOPER: 1, Role.OPERATOR: 2, Role.ADMIN: 3}
"""Which role is higher, when a user's groups map to several."""

USERNAME_MAX = 64
SEEN_TOKENS = 10_000
"""Token ids remembered per process, so each token's first use is audited once."""

_ENV_FIELDS = {
    "oidc_issuer": "issuer",
    "oidc_audience": "audience",
    "oidc_role_map": "role_map",
    "oidc_allow_http": "allow_http",
    "oidc_client_id": "client_id",
    "oidc_roles_claim": "roles_claim",
    "oidc_token_type": "token_type",
}


def effective_config(settings: Settings, config: OidcConfig) -> OidcConfig:
    """`security.yaml`'s `oidc` section with the `DEVTEAM_OIDC_*` variables over it."""
    values = config.model_dump()
    for setting, field in _ENV_FIELDS.items():
        value = getattr(settings, setting)
        if value is not None:
            values[field] = value
    try:
        return OidcConfig.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'oidc'}: "
            + e["msg"].removeprefix("Value error, ")
            for e in exc.errors(include_url=False)
        )
        raise ConfigError(f"single sign-on: {problems}") from None


def token_issuer(token: str) -> str | None:
    """The `iss` a JWT claims, unverified (to pick who checks it), or None."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    issuer = claims.get("iss")
    return issuer if isinstance(issuer, str) else None


@dataclass(frozen=True, slots=True)
class ProviderTokens:
    """What the provider's token endpoint gave: the bearer for this API, and a refresh token."""

    access_token: str
    refresh_token: str | None
    expires_in: int


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a verified provider token stands for."""

    issuer: str
    subject: str
    username: str
    groups: tuple[str, ...]
    token_id: str | None
    expires_at: float


class ProviderKeys:
    """Discovery and the provider's signing keys, cached and refreshed on an unknown `kid`."""

    def __init__(self, config: OidcConfig, http: httpx.AsyncClient | None = None) -> None:
        assert config.issuer is not None
        self.config = config
        self.issuer = config.issuer
        self._http = http or httpx.AsyncClient(
            timeout=config.http_timeout_s, follow_redirects=False
        )
        self._owns_http = http is None
        self._metadata: dict[str, Any] | None = None
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()

    async def metadata(self) -> dict[str, Any]:
        """The provider's discovery document (fetched once, checked against the issuer)."""
        if self._metadata is None:
            async with self._lock:
                if self._metadata is None:
                    self._metadata = await self._discover()
        return self._metadata

    async def key(self, kid: str | None) -> dict[str, Any]:
        """The JWK named `kid` (or the only key, for a token without `kid`)."""
        now = time.monotonic()
        if self._fetched_at is None or now - self._fetched_at > self.config.jwks_cache_s:
            await self._refresh(force=True)
        found = self._find(kid)
        if found is None and await self._refresh(force=False):
            found = self._find(kid)
        if found is None:
            raise Unauthorized(
                "the token is signed with a key the identity provider does not publish"
            )
        return found

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    def _find(self, kid: str | None) -> dict[str, Any] | None:
        if kid is not None:
            return self._keys.get(kid)
        return next(iter(self._keys.values())) if len(self._keys) == 1 else None

    async def _refresh(self, *, force: bool) -> bool:
        """Fetch the keys again; without `force`, at most once per refresh interval."""
        async with self._lock:
            now = time.monotonic()
            if (
                not force
                and self._fetched_at is not None
                and now - self._fetched_at < self.config.jwks_refresh_interval_s
            ):
                return False
            metadata = self._metadata or await self._discover()
            self._metadata = metadata
            document = await self._get_json(str(metadata["jwks_uri"]), "keys")
            keys = document.get("keys")
            if not isinstance(keys, list):
                raise ServiceUnavailable("the identity provider's key set has no keys")
            self._keys = {
                str(k.get("kid", f"#{i}")): k
                for i, k in enumerate(keys)
                if isinstance(k, dict) and k.get("use", "sig") == "sig"
            }
            self._fetched_at = now
            log.info("oidc.keys_fetched", issuer=self.issuer, keys=len(self._keys))
            return True

    async def _discover(self) -> dict[str, Any]:
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        metadata = await self._get_json(url, "discovery")
        if metadata.get("issuer") != self.issuer:
            raise ServiceUnavailable(
                "the identity provider's discovery document names another issuer"
            )
        jwks_uri = metadata.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not self.allowed_url(jwks_uri):
            raise ServiceUnavailable("the identity provider's jwks_uri is missing or not https")
        return metadata

    @property
    def http(self) -> httpx.AsyncClient:
        return self._http

    def allowed_url(self, url: str) -> bool:
        return url.startswith("https://") or (self.config.allow_http and url.startswith("http://"))

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            response = await self._http.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("oidc.provider_unreachable", url=url, what=what, error=str(exc)[:200])
            raise ServiceUnavailable("the identity provider cannot be reached") from None
        if not isinstance(document, dict):
            raise ServiceUnavailable(f"the identity provider's {what} document is not an object")
        return document


class OidcVerifier:
    """Checks a provider's access token and says who it stands for."""

    def __init__(self, config: OidcConfig, keys: ProviderKeys) -> None:
        assert config.issuer is not None and config.audience is not None
        self.config = config
        self.keys = keys

    async def verify(self, token: str) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("invalid token") from None
        algorithm = header.get("alg")
        if algorithm not in self.config.algorithms:
            raise Unauthorized(f"token algorithm {algorithm!r} is not accepted")
        kid = header.get("kid")
        jwk = await self.keys.key(kid if isinstance(kid, str) else None)
        if jwk.get("alg") not in (None, algorithm):
            raise Unauthorized("the token's algorithm does not match its key")
        try:
            key = jwt.PyJWK(jwk, algorithm=algorithm)
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],
                audience=self.config.audience,
                issuer=self.config.issuer,
                leeway=self.config.leeway_s,
                options={"require": ["iss", "aud", "exp", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenExpired() from None
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"invalid token: {_reason(exc)}") from None
        return self._identity(claims)

    def _identity(self, claims: Mapping[str, Any]) -> Identity:
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject or len(subject) > 255:
            raise Unauthorized("invalid token: bad sub claim")
        username = next(
            (
                value
                for value in (claims.get("preferred_username"), claims.get("email"), subject)
                if isinstance(value, str) and value.strip()
            ),
            subject,
        )
        raw = claims.get(self.config.roles_claim, [])
        groups = (raw,) if isinstance(raw, str) else tuple(g for g in raw if isinstance(g, str))
        token_id = claims.get("jti")
        return Identity(
            issuer=self.config.issuer or "",
            subject=subject,
            username=username.strip().lower()[:USERNAME_MAX],
            groups=groups if isinstance(raw, str | list) else (),
            token_id=token_id if isinstance(token_id, str) else None,
            expires_at=float(claims["exp"]),
        )


def role_for(groups: Sequence[str], role_map: Mapping[str, Role]) -> Role | None:
    """The highest role any of `groups` maps to; None when none is mapped."""
    roles = [role_map[g] for g in groups if g in role_map]
    return max(roles, key=ROLE_RANK.__getitem__) if roles else None


class OidcAuthenticator:
    """Provider tokens in, callers out: verification, users on first sight, roles per token."""

    def __init__(
        self,
        config: OidcConfig,
        store: Store,
        permissions: RolePermissions,
        auditor: Auditor,
        *,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.permissions = permissions
        self.auditor = auditor
        self.keys = ProviderKeys(config, http)
        self.verifier = OidcVerifier(config, self.keys)
        self._seen: OrderedDict[str, None] = OrderedDict()

    @property
    def issuer(self) -> str:
        return self.config.issuer or ""

    async def authenticate(self, token: str, *, auditor: Auditor | None = None) -> Principal:
        """The caller behind a provider access token.

        Raises `Unauthorized`/`TokenExpired` (401), `Forbidden` (403: no mapped group, or
        the username belongs to someone else) or `ServiceUnavailable` (the provider is
        unreachable and its keys are not known yet).
        """
        identity = await self.verifier.verify(token)
        auditor = auditor or self.auditor
        role = role_for(identity.groups, self.config.role_map)
        async with self.store.read_statement() as tx:
            user = await tx.users.get_external(identity.issuer, identity.subject)
        if user is not None and not user.is_active:
            raise Forbidden("this account is deactivated here")
        if role is None:
            await self._refuse(identity, auditor, user)
        if user is None:
            user = await self._create(identity, role, auditor)
        elif user.role is not role:
            user = await self._change_role(user, role, identity, auditor)
        await self._record_sign_in(identity, user, auditor)
        return self.permissions.principal(user)

    async def close(self) -> None:
        await self.keys.close()

    async def authorization_endpoint(self) -> str | None:
        """Where browsers sign in (from discovery); None while the provider is unreachable."""
        try:
            endpoint = (await self.keys.metadata()).get("authorization_endpoint")
        except ServiceUnavailable:
            return None
        return endpoint if isinstance(endpoint, str) else None

    async def exchange_code(self, code: str, verifier: str, redirect_uri: str) -> ProviderTokens:
        """The web UI's authorization code (with its PKCE verifier) traded for tokens.

        Done here, not in the browser, so the page needs no connection to the provider
        (its CSP stays `connect-src 'self'`) and the provider no CORS.
        """
        return await self._token_request(
            {
                "grant_type": "authorization_code",
                "code": code,
                "code_verifier": verifier,
                "redirect_uri": redirect_uri,
            }
        )

    async def refresh(self, refresh_token: str) -> ProviderTokens:
        """New tokens from the provider's refresh token."""
        return await self._token_request(
            {"grant_type": "refresh_token", "refresh_token": refresh_token}
        )

    async def _token_request(self, form: dict[str, str]) -> ProviderTokens:
        client_id = self.config.client_id
        if client_id is None:
            raise NotFound("single sign-on names no client (DEVTEAM_OIDC_CLIENT_ID)")
        endpoint = (await self.keys.metadata()).get("token_endpoint")
        if not isinstance(endpoint, str) or not self.keys.allowed_url(endpoint):
            raise ServiceUnavailable("the identity provider's token endpoint is missing")
        form = {**form, "client_id": client_id, "resource": self.config.audience or ""}
        try:
            response = await self.keys.http.post(endpoint, data=form)
            body = response.json()
        except (httpx.HTTPError, ValueError):
            raise ServiceUnavailable("the identity provider cannot be reached") from None
        if not isinstance(body, dict):
            raise ServiceUnavailable("the identity provider answered no JSON object")
        if response.is_error:
            error = str(body.get("error", "refused"))[:100]
            raise Unauthorized(f"the identity provider refused: {error}")
        token = body.get(self.config.token_type)
        if not isinstance(token, str):
            raise Unauthorized(f"the identity provider's answer has no {self.config.token_type}")
        refresh_token = body.get("refresh_token")
        expires_in = body.get("expires_in")
        return ProviderTokens(
            access_token=token,
            refresh_token=refresh_token if isinstance(refresh_token, str) else None,
            expires_in=int(expires_in) if isinstance(expires_in, int | float) else 300,
        )

    async def _refuse(self, identity: Identity, auditor: Auditor, user: User | None) -> NoReturn:
        await auditor.record(
            AuditAction.LOGIN,
            AuditOutcome.DENIED,
            actor=user or identity.username,
            resource_type="user",
            resource_id=user.id if user else None,
            details={
                "method": "oidc",
                "reason": "no mapped group",
                "groups": list(identity.groups)[:20],
            },
        )
        raise Forbidden(
            "your identity provider account is in no group that has a role here; "
            "ask an administrator to map one of your groups to a role"
        )

    async def _create(self, identity: Identity, role: Role, auditor: Auditor) -> User:
        async with self.store.transaction() as tx:
            existing = await tx.users.get_external(identity.issuer, identity.subject)
            if existing is not None:  # created meanwhile by a concurrent request
                return existing
            try:
                user = await tx.users.create_external(
                    identity.username, role, issuer=identity.issuer, subject=identity.subject
                )
            except Conflict:
                raise Forbidden(
                    f"the username {identity.username!r} belongs to another account here; "
                    "ask an administrator"
                ) from None
            await auditor.record(
                AuditAction.USER_CREATE,
                AuditOutcome.SUCCESS,
                actor=user,
                resource_type="user",
                resource_id=user.id,
                details={"method": "oidc", "role": role.value, "issuer": identity.issuer},
                tx=tx,
            )
        return user

    async def _change_role(
        self, user: User, role: Role, identity: Identity, auditor: Auditor
    ) -> User:
        async with self.store.transaction() as tx:
            updated = await tx.users.set_role(user.id, role)
            await auditor.record(
                AuditAction.USER_ROLE_CHANGE,
                AuditOutcome.SUCCESS,
                actor=user,
                resource_type="user",
                resource_id=user.id,
                details={
                    "method": "oidc",
                    "from": user.role.value,
                    "to": role.value,
                    "groups": list(identity.groups)[:20],
                },
                tx=tx,
            )
        return updated or user

    async def _record_sign_in(self, identity: Identity, user: User, auditor: Auditor) -> None:
        key = identity.token_id or f"{identity.subject}:{identity.expires_at}"
        if key in self._seen:
            self._seen.move_to_end(key)
            return
        self._seen[key] = None
        if len(self._seen) > SEEN_TOKENS:
            self._seen.popitem(last=False)
        await auditor.record(
            AuditAction.LOGIN,
            AuditOutcome.SUCCESS,
            actor=user,
            resource_type="user",
            resource_id=user.id,
            details={"method": "oidc", "issuer": identity.issuer},
        )


def _reason(exc: jwt.PyJWTError) -> str:
    """A short, safe reason for a refused token."""
    if isinstance(exc, jwt.InvalidAudienceError):
        return "wrong audience"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "wrong issuer"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "not valid yet"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"missing {exc.claim} claim"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "bad signature"
    return "cannot be verified"
