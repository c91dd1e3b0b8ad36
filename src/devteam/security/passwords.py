"""Password hashing with argon2id.

Hashing is deliberately slow, so it runs in a worker thread and never blocks the
event loop. `verify_unknown_user` spends the same time as a real check, so a login
for a user that does not exist cannot be told from a wrong password by its timing.
"""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from devteam.domain.errors import ValidationFailed
from devteam.settings.security import PasswordsConfig


class Passwords:
    def __init__(self, config: PasswordsConfig) -> None:
        self.config = config
        self._hasher = PasswordHasher(
            time_cost=config.time_cost,
            memory_cost=config.memory_cost_kib,
            parallelism=config.parallelism,
        )
        # A hash with the configured costs, of a password nobody knows.
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(32))

    def check_policy(self, password: str) -> None:
        """Refuse a password that is too short or too long for a new account."""
        if len(password) < self.config.min_length:
            raise ValidationFailed(
                f"password: at least {self.config.min_length} characters",
                details=[_detail("password", f"at least {self.config.min_length} characters")],
            )
        if len(password) > self.config.max_length:
            raise ValidationFailed(
                f"password: at most {self.config.max_length} characters",
                details=[_detail("password", f"at most {self.config.max_length} characters")],
            )

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        return await asyncio.to_thread(self._verify, password_hash, password)

    async def verify_unknown_user(self, password: str) -> bool:
        """Verify against a dummy hash when the user does not exist, so timing reveals nothing.

        Always False.
        """
        await asyncio.to_thread(self._verify, self._dummy_hash, password)
        return False

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the stored hash was made with other costs than the configured ones."""
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


def _detail(field: str, message: str) -> dict[str, object]:
    return {"loc": ["body", field], "field": field, "message": message, "type": "value_error"}
