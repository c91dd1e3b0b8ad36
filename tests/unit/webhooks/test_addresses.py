"""Which webhook addresses may be called, and the settings that govern them."""

from __future__ import annotations

import ipaddress

import pytest

from devteam.domain.errors import ConfigError
from devteam.settings import load_settings
from devteam.webhooks.addresses import UrlRefused, is_public, resolve_target


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
    ],
)
def test_only_public_addresses_are_public(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


async def test_a_listed_host_may_be_private_and_the_target_is_the_checked_address() -> None:
    target = await resolve_target("http://127.0.0.1:8080/hook?x=1", ["127.0.0.1"])
    assert (target.scheme, target.host, target.port) == ("http", "127.0.0.1", 8080)
    assert target.netloc == "127.0.0.1:8080"
    ipv6 = await resolve_target("https://[::1]/hook", ["::1"])
    assert ipv6.netloc == "[::1]:443"
    with pytest.raises(UrlRefused, match="resolves to ::1"):
        await resolve_target("https://[::1]/hook", ["127.0.0.1"])


async def test_a_name_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(UrlRefused, match="cannot be resolved"):
        await resolve_target("https://no-such-host.invalid/hook", [])


def test_webhook_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVTEAM_WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    monkeypatch.setenv("DEVTEAM_WEBHOOK_ALLOWED_HOSTS", '["Hooks.Internal", "[::1]"]')
    settings = load_settings(_env_file=None)
    assert settings.webhook_allowed_hosts == ["hooks.internal", "::1"]
    assert settings.webhook_secret is not None


@pytest.mark.parametrize(
    ("secret", "says"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "starts with whsec_"),
        ("whsec_not base64!", "base64"),
        ("whsec_c2hvcnQ=", "24 to 64 bytes"),
    ],
)
def test_a_bad_webhook_secret_stops_start_up(
    monkeypatch: pytest.MonkeyPatch, secret: str, says: str
) -> None:
    monkeypatch.setenv("DEVTEAM_WEBHOOK_SECRET", secret)
    with pytest.raises(ConfigError, match="DEVTEAM_WEBHOOK_SECRET") as caught:
        load_settings(_env_file=None)
    assert says in caught.value.message
    assert secret not in caught.value.message, "a secret is never shown"
