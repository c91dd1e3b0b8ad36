"""A real OpenID provider for the tests: `oidc-provider` (Node) on loopback.

```python
with OidcProviders.start(device_flow=True) as providers:
    idp = providers[0]
    idp.account("alice", groups=["devteam-devs"])
    token = idp.code_flow_token("alice")            # authorization code + PKCE
    forged = idp.sign({...})                        # with the provider's own key
```

The tests generate the signing keys and hand them to the provider, so they can also
sign tokens the provider never issued (expired, wrong audience, ...) with its real
key. Interactions at the provider are automatic for the account set with `login`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests import servers

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "tests" / "node" / "oidc_provider.mjs"
PACKAGE = REPO / "tests" / "node" / "node_modules" / "oidc-provider"
AUDIENCE = "https://devteam.test/api"
CLI_CLIENT = "devteam-cli"
CALLBACK = "http://127.0.0.1:{port}/callback"


def provider_missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed (single sign-on tests run a real OpenID provider)"
    if not PACKAGE.exists():
        return "tests/node has no oidc-provider: run npm ci --prefix tests/node"
    return None


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def new_key(kid: str) -> tuple[rsa.RSAPrivateKey, dict[str, Any]]:
    """An RSA key and its private JWK (what the provider signs with)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key))
    jwk.update(kid=kid, alg="RS256", use="sig")
    return key, jwk


@dataclass
class Provider:
    port: int
    key: rsa.RSAPrivateKey
    jwk: dict[str, Any]
    device_flow: bool
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.issuer, timeout=10, follow_redirects=False)

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def kid(self) -> str:
        return str(self.jwk["kid"])

    def options(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "jwks": {"keys": [self.jwk]},
            "audience": AUDIENCE,
            "device_flow": self.device_flow,
        }

    def metadata(self) -> dict[str, Any]:
        document: dict[str, Any] = self.http.get("/.well-known/openid-configuration").json()
        return document

    def account(self, sub: str, *, groups: list[str], username: str | None = None) -> None:
        """Create or change an account at the provider (its groups, its username)."""
        body = {"sub": sub, "groups": groups, "preferred_username": username or sub}
        assert self.http.post("/test/account", json=body).status_code == 204

    def login(self, sub: str) -> None:
        """Be signed in at the provider as `sub`: its interactions finish as `sub`.

        A fresh browser each time: no session cookie of an earlier account is left over.
        """
        self.http.cookies.clear()
        assert self.http.post("/test/login", json={"sub": sub}).status_code == 204

    def authorize(self, url: str, redirect_prefix: str) -> str:
        """Follow an authorization request as a signed-in browser would; the final redirect."""
        response = self.http.get(url)
        for _ in range(10):
            location = response.headers.get("location")
            assert location, f"{response.status_code}: {response.text[:300]}"
            if location.startswith(redirect_prefix):
                return str(location)
            response = self.http.get(location)
        raise AssertionError("too many redirects at the provider")

    def code_flow_token(self, sub: str, *, resource: str = AUDIENCE) -> dict[str, Any]:
        """Tokens for `sub` through the authorization code flow with PKCE."""
        self.login(sub)
        verifier = secrets.token_urlsafe(48)
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        redirect = CALLBACK.format(port=free_port())
        metadata = self.metadata()
        request = httpx.URL(
            metadata["authorization_endpoint"],
            params={
                "client_id": CLI_CLIENT,
                "response_type": "code",
                "redirect_uri": redirect,
                "scope": "openid profile groups offline_access",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "resource": resource,
                "state": "s",
            },
        )
        final = httpx.URL(self.authorize(str(request), redirect))
        response = self.http.post(
            metadata["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": final.params["code"],
                "redirect_uri": redirect,
                "client_id": CLI_CLIENT,
                "code_verifier": verifier,
                "resource": resource,
            },
        )
        assert response.status_code == 200, response.text
        tokens: dict[str, Any] = response.json()
        return tokens

    def confirm_device_code(self, verification_uri_complete: str, sub: str) -> None:
        """Enter a device code at the provider as the signed-in `sub` would."""
        self.login(sub)
        page = self.http.get(verification_uri_complete)
        assert page.status_code == 200, page.text[:300]
        form = _hidden_inputs(page.text)
        action = re.search(r'<form[^>]*action="([^"]+)"', page.text)
        assert action is not None, page.text[:300]
        response = self.http.post(action.group(1), data=form)
        # The provider asks to confirm the code, then runs its (automatic) interaction.
        for _ in range(10):
            if response.status_code in (302, 303):
                response = self.http.get(response.headers["location"])
                continue
            if "<form" in response.text and 'name="xsrf"' in response.text:
                action = re.search(r'<form[^>]*action="([^"]+)"', response.text)
                assert action is not None
                fields = _hidden_inputs(response.text)
                fields.setdefault("confirm", "yes")
                response = self.http.post(action.group(1), data=fields)
                continue
            break
        assert response.status_code == 200, response.text[:300]

    def sign(
        self,
        claims: dict[str, Any],
        *,
        key: Any = None,
        algorithm: str = "RS256",
        headers: dict[str, Any] | None = None,
    ) -> str:
        """A token signed with the provider's key (or `key`), with defaults a valid one has."""
        now = int(time.time())
        body = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": "alice",
            "iat": now,
            "exp": now + 300,
            "jti": secrets.token_hex(8),
            **claims,
        }
        return jwt.encode(
            {k: v for k, v in body.items() if v is not None},
            key if key is not None else self.key,
            algorithm=algorithm,
            headers={"kid": self.kid, **(headers or {})},
        )


def _hidden_inputs(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"\s*/?>', html))


class OidcProviders:
    """One Node process running one or more providers; restartable with new keys."""

    def __init__(self, providers: list[Provider], folder: Path) -> None:
        self.providers = providers
        self.folder = folder
        self.process: subprocess.Popen[str] | None = None

    def __getitem__(self, index: int) -> Provider:
        return self.providers[index]

    @classmethod
    @contextmanager
    def start(cls, *flows: bool) -> Iterator[OidcProviders]:
        """Providers, one per entry of `flows` (True: with the device flow)."""
        if reason := provider_missing():
            servers.unavailable(reason)
        with tempfile.TemporaryDirectory(prefix="devteam-oidc-") as folder:
            providers = []
            for index, device_flow in enumerate(flows or (True,)):
                key, jwk = new_key(f"key-{index}-1")
                providers.append(Provider(free_port(), key, jwk, device_flow))
            running = cls(providers, Path(folder))
            running.launch()
            try:
                yield running
            finally:
                running.stop()
                for provider in providers:
                    provider.http.close()

    def launch(self) -> None:
        config = self.folder / "providers.json"
        config.write_text(json.dumps({"providers": [p.options() for p in self.providers]}))
        self.process = subprocess.Popen(
            ["node", str(SCRIPT), str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("ready"):
            self.stop()
            raise RuntimeError(f"the OpenID provider did not start: {line!r}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None

    def rotate_keys(self, index: int = 0) -> None:
        """Restart with a new signing key for provider `index` (its accounts are gone)."""
        provider = self.providers[index]
        generation = int(provider.kid.rsplit("-", 1)[1]) + 1
        provider.key, provider.jwk = new_key(f"key-{index}-{generation}")
        self.stop()
        self.launch()
