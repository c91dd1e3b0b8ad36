"""argon2id hashing, the password policy and the dummy check for unknown users."""

from __future__ import annotations

import pytest

from devteam.domain.errors import ValidationFailed
from devteam.security.passwords import Passwords
from devteam.settings.security import PasswordsConfig

CHEAP = PasswordsConfig(time_cost=1, memory_cost_kib=8, parallelism=1)


async def test_hash_and_verify() -> None:
    passwords = Passwords(CHEAP)
    stored = await passwords.hash("correct horse battery staple")
    assert stored.startswith("$argon2id$")
    assert "correct horse" not in stored
    assert await passwords.verify(stored, "correct horse battery staple")
    assert not await passwords.verify(stored, "correct horse battery stapler")
    assert await passwords.hash("correct horse battery staple") != stored  # salted


async def test_broken_hashes_never_verify() -> None:
    passwords = Passwords(CHEAP)
    assert not await passwords.verify("not-a-real-hash", "anything")
    assert not await passwords.verify("", "")


async def test_unknown_user_never_verifies() -> None:
    assert not await Passwords(CHEAP).verify_unknown_user("whatever it is")


async def test_rehash_when_costs_change() -> None:
    old = Passwords(CHEAP)
    new = Passwords(PasswordsConfig(time_cost=2, memory_cost_kib=16, parallelism=1))
    stored = await old.hash("correct horse battery staple")
    assert not old.needs_rehash(stored)
    assert new.needs_rehash(stored)
    assert new.needs_rehash("not-a-real-hash")


@pytest.mark.parametrize(
    ("password", "problem"),
    [("short", "at least 12 characters"), ("x" * 257, "at most 256 characters")],
    ids=["too-short", "too-long"],
)
def test_policy(password: str, problem: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        Passwords(CHEAP).check_policy(password)
    assert caught.value.message == f"password: {problem}"
    assert caught.value.details[0]["field"] == "password"
    Passwords(CHEAP).check_policy("twelve chars")  # exactly the minimum passes
