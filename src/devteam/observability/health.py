"""Readiness checks: each names a dependency and says what is wrong with it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

Check = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Readiness:
    ready: bool
    checks: dict[str, str]
    """Check name -> `ok` or the reason it failed."""


async def run_checks(checks: Mapping[str, Check], *, timeout: float = 2.0) -> Readiness:
    async def one(check: Check) -> str:
        try:
            await asyncio.wait_for(check(), timeout)
        except TimeoutError:
            return f"timed out after {timeout:g}s"
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"[:300]
        return "ok"

    results = await asyncio.gather(*(one(check) for check in checks.values()))
    named = dict(zip(checks, results, strict=True))
    return Readiness(ready=all(r == "ok" for r in results), checks=named)
