"""The retention purge runs in the background of a serving process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from devteam.settings.security import RetentionConfig
from tests.auth import security_config


async def test_serve_runs_the_purge_in_the_background(
    make_auth_client: Callable[..., Any],
) -> None:
    base = security_config()
    retention = RetentionConfig(audit_days=1 / 86400, interval_s=1)  # one second
    config = base.model_copy(
        update={"security": base.security.model_copy(update={"retention": retention})}
    )
    async with make_auth_client(config=config) as (app, client):
        await client.post("/api/v1/auth/token", data={"username": "nobody", "password": "x"})
        store = app.state.services.store
        async with store.read() as tx:
            assert await tx.audit.list(limit=10)
        deadline = time.monotonic() + 20
        while True:  # the job has no event to await: look until it has run
            async with store.read() as tx:
                if not await tx.audit.list(limit=10):
                    break
            assert time.monotonic() < deadline, "the audit entry was never purged"
            await asyncio.sleep(0.2)
