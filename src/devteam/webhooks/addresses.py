"""Which addresses a webhook may reach.

A URL whose host resolves to an address that is not public (private, loopback,
link-local, shared, reserved, multicast, unspecified) is refused unless the
host is listed in `webhook_allowed_hosts`. The host is resolved when the task
is submitted and again before every delivery, and the delivery connects to the
address checked then (`Target`), so a name that is re-pointed at an internal
address after the check (DNS rebinding) gains nothing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from devteam.domain.errors import ValidationFailed
from devteam.domain.webhooks import Webhook
from devteam.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

RESOLVE_TIMEOUT_S = 5.0


class UrlRefused(Exception):
    """The URL may not be called; `reason` says why, for the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Target:
    """Where one delivery connects: the URL's host and port, at a checked address."""

    scheme: str
    host: str
    port: int
    address: IPAddress

    @property
    def netloc(self) -> str:
        """The checked address and port, as the URL to connect to has them."""
        literal = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return f"{literal}:{self.port}"


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


async def resolve_target(url: str, allowed_hosts: Collection[str]) -> Target:
    """The address to connect to for `url`, or `UrlRefused`."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise UrlRefused("only http and https URLs with a host can be called")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = await _resolve(host, port)
    if host not in allowed_hosts:
        refused = [a for a in addresses if not is_public(a)]
        if refused:
            raise UrlRefused(
                f"{host} resolves to {refused[0]}, a private, loopback or link-local address; "
                "list the host in DEVTEAM_WEBHOOK_ALLOWED_HOSTS to allow it"
            )
    return Target(parts.scheme, host, port, addresses[0])


async def check_webhook(webhook: Webhook, settings: Settings) -> None:
    """Refuse (422) a webhook this server cannot sign or may not call."""
    if settings.webhook_secret is None:
        raise ValidationFailed(
            "webhook: this server has no DEVTEAM_WEBHOOK_SECRET, so it sends no webhooks",
            details=[_detail("this server has no DEVTEAM_WEBHOOK_SECRET", ["body", "webhook"])],
        )
    try:
        await resolve_target(webhook.url, settings.webhook_allowed_hosts)
    except UrlRefused as exc:
        raise ValidationFailed(
            f"webhook.url: {exc.reason}",
            details=[_detail(exc.reason, ["body", "webhook", "url"])],
        ) from None


def _detail(message: str, loc: list[str]) -> dict[str, Any]:
    return {"loc": loc, "field": ".".join(loc[1:]), "message": message, "type": "value_error"}


async def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
    except (OSError, TimeoutError, UnicodeError):
        raise UrlRefused(f"{host} cannot be resolved") from None
    addresses: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UrlRefused(f"{host} cannot be resolved")
    return addresses
