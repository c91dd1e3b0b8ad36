"""Users and their roles."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from devteam.domain.enums import Role


class User(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: UUID
    username: str
    role: Role
    is_active: bool
    created_at: datetime
    updated_at: datetime


class UserWithSecret(User):
    """A user with the password hash; never leaves the security layer."""

    password_hash: str
