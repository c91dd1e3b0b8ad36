"""Delivers the webhook outbox: claims due deliveries, POSTs them signed, retries with back-off.

Every process (`devteam serve` and `devteam worker`) runs one. A dispatcher
claims due rows with a lease (so several processes never send one attempt
twice, and a process that dies mid-attempt leaves its rows to the others once
the lease expires), sends each, and records the outcome. A 2xx answer delivers;
anything else (another status, a timeout, a refused connection, an address no
longer allowed) is retried after `webhook_retry_initial_s`, doubling up to
`webhook_retry_max_interval_s`, until `webhook_retry_for_s` after the task
ended; then the delivery is `failed`. Redirects are not followed.

Each request carries the Standard Webhooks headers: `webhook-id` (the
delivery's id, the same on every attempt), `webhook-timestamp` and
`webhook-signature` (HMAC-SHA256 with `DEVTEAM_WEBHOOK_SECRET`). The body is
the task as `GET /api/v1/tasks/{id}` shows it, rendered at the first attempt
and sent byte for byte the same on every retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import httpx
from standardwebhooks import Webhook as Signer

from devteam import __version__
from devteam.domain.tasks import Task
from devteam.domain.webhooks import DeliveryAttempt, DeliveryStatus, WebhookDelivery
from devteam.observability.logging import get_logger
from devteam.settings import Settings
from devteam.storage import Store
from devteam.storage.repositories.webhooks import Claimed, Outcome
from devteam.storage.types import utcnow
from devteam.webhooks.addresses import Target, UrlRefused, resolve_target

log = get_logger(__name__)

Render = Callable[[Task, list[Task]], str]
"""The body of a delivery: the task and its subtasks, as `GET /api/v1/tasks/{id}` shows it."""

BATCH = 16
"""Deliveries claimed (and sent concurrently) at once."""
LEASE_MARGIN_S = 30.0
"""A claim lasts the attempt's timeout plus this; a dead process's rows are free after it."""
ERROR_MAX = 500


class WebhookDispatcher:
    def __init__(self, store: Store, settings: Settings, render: Render) -> None:
        if settings.webhook_secret is None:
            raise ValueError("the dispatcher needs DEVTEAM_WEBHOOK_SECRET")
        self.store = store
        self.settings = settings
        self.render = render
        self.signer = Signer(settings.webhook_secret.get_secret_value())
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            timeout=settings.webhook_timeout_s,
            headers={"User-Agent": f"DevTeam-Webhooks/{__version__}"},
        )
        self._loop: asyncio.Task[None] | None = None
        self._in_flight: set[uuid.UUID] = set()

    async def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="webhook-dispatcher")

    async def stop(self) -> None:
        """Stop sending; deliveries cut short are handed back for any process to send."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
            self._loop = None
        if self._in_flight:
            with contextlib.suppress(Exception):
                async with self.store.transaction() as tx:
                    await tx.webhooks.release(list(self._in_flight), self.owner)
            self._in_flight.clear()
        await self._client.aclose()

    async def _run(self) -> None:
        while True:
            try:
                sent = await self.run_once()
            except Exception:
                log.exception("webhook deliveries could not be claimed; trying again")
                sent = 0
            if sent < BATCH:
                await asyncio.sleep(self.settings.webhook_poll_s)

    async def run_once(self) -> int:
        """Claim what is due now and send it; returns how many were sent."""
        now = utcnow()
        # A read first: most of the time nothing is due, and a claim is a write.
        async with self.store.read_statement() as tx:
            if not await tx.webhooks.any_due(now):
                return 0
        lease = timedelta(seconds=self.settings.webhook_timeout_s + LEASE_MARGIN_S)
        async with self.store.transaction() as tx:
            claimed = await tx.webhooks.claim(self.owner, now, now + lease, BATCH)
        self._in_flight.update(c.delivery.id for c in claimed)
        await asyncio.gather(*(self._deliver(c) for c in claimed))
        return len(claimed)

    async def _deliver(self, claimed: Claimed) -> None:
        delivery = claimed.delivery
        try:
            payload = claimed.payload or await self._payload(delivery)
            if payload is None:
                return  # the task is gone, and its deliveries with it
            attempt = await self._attempt(delivery, payload)
            outcome = self._outcome(delivery, attempt, payload)
            async with self.store.transaction() as tx:
                kept = await tx.webhooks.record(delivery.id, self.owner, outcome)
            if not kept:
                log.warning("a webhook delivery's lease was lost", delivery_id=str(delivery.id))
            log.info(
                "webhook attempt",
                delivery_id=str(delivery.id),
                task_id=str(delivery.task_id),
                status_code=attempt.status_code,
                error=attempt.error,
                outcome=outcome.status.value,
            )
        except Exception:
            # The lease runs out and the delivery is tried again.
            log.exception("a webhook delivery failed unexpectedly", delivery_id=str(delivery.id))
        finally:
            self._in_flight.discard(delivery.id)

    async def _payload(self, delivery: WebhookDelivery) -> str | None:
        async with self.store.read() as tx:
            task = await tx.tasks.get(delivery.task_id)
            if task is None:
                return None
            subtasks = await tx.tasks.children(task.id)
        return self.render(task, subtasks)

    async def _attempt(self, delivery: WebhookDelivery, payload: str) -> DeliveryAttempt:
        started = utcnow()
        clock = time.monotonic()
        status_code: int | None = None
        error: str | None = None
        try:
            target = await resolve_target(delivery.url, self.settings.webhook_allowed_hosts)
            response = await self._post(delivery, payload, target)
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"the receiver answered {status_code}"
        except UrlRefused as exc:
            error = f"refused: {exc.reason}"
        except httpx.TimeoutException:
            error = f"no answer within {self.settings.webhook_timeout_s:g} s"
        except httpx.HTTPError as exc:
            error = f"could not reach the receiver: {type(exc).__name__}: {exc}"[:ERROR_MAX]
        return DeliveryAttempt(
            at=started,
            status_code=status_code,
            error=error,
            duration_ms=round((time.monotonic() - clock) * 1000, 1),
        )

    async def _post(
        self, delivery: WebhookDelivery, payload: str, target: Target
    ) -> httpx.Response:
        parts = urlsplit(delivery.url)
        # Connect to the address checked just now, whatever the name resolves to later;
        # the Host header and TLS (server name and certificate) still use the name.
        url = urlunsplit((parts.scheme, target.netloc, parts.path or "/", parts.query, ""))
        timestamp = utcnow()
        headers = {
            "Host": parts.netloc.rsplit("@", 1)[-1],
            "Content-Type": "application/json",
            "webhook-id": str(delivery.id),
            "webhook-timestamp": str(int(timestamp.timestamp())),
            "webhook-signature": self.signer.sign(str(delivery.id), timestamp, payload),
        }
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        return await self._client.post(
            url, content=payload.encode(), headers=headers, extensions=extensions
        )

    def _outcome(
        self, delivery: WebhookDelivery, attempt: DeliveryAttempt, payload: str
    ) -> Outcome:
        if attempt.error is None:
            return Outcome(attempt, DeliveryStatus.DELIVERED, None, payload)
        settings = self.settings
        wait = min(
            settings.webhook_retry_initial_s * 2**delivery.attempts,
            settings.webhook_retry_max_interval_s,
        )
        # Up to a quarter less, so the retries of many deliveries spread out.
        next_at = utcnow() + timedelta(seconds=wait * random.uniform(0.75, 1.0))
        if next_at > delivery.created_at + timedelta(seconds=settings.webhook_retry_for_s):
            return Outcome(attempt, DeliveryStatus.FAILED, None, payload)
        return Outcome(attempt, DeliveryStatus.PENDING, next_at, payload)
