"""The TeamLeader: what the API (and the CLI, and tests) ask of the orchestration.

Submit a task, cancel it, approve its plan, read and reload the rules; run the
executors and the sweeper in this process (embedded mode, or `devteam worker`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError

from devteam.broker.channels import CONTROL_CHANNEL, encode_control
from devteam.broker.protocol import Broker, Subscription
from devteam.domain.agents import Agent
from devteam.domain.audit import NewAuditEntry
from devteam.domain.enums import TERMINAL_STATUSES, AgentType, TaskStatus
from devteam.domain.errors import ConfigError, Conflict, NotFound, ValidationFailed
from devteam.domain.tasks import Budget, Task, TaskRequest, Usage
from devteam.domain.users import User
from devteam.observability import metrics, tracing
from devteam.observability.logging import get_logger
from devteam.orchestration.clock import Clock, SystemClock
from devteam.orchestration.effects import BrokerEffects
from devteam.orchestration.engine import Engine, TransitionResult, Within
from devteam.orchestration.executor import Executor
from devteam.orchestration.planning import Planner, violations
from devteam.orchestration.policy import default_policy
from devteam.orchestration.recovery import Sweeper
from devteam.orchestration.rules.base import Policy, TransitionRequest
from devteam.settings import load_yaml_model
from devteam.settings.team_leader import TeamLeaderConfig
from devteam.storage import Store, UnitOfWork

if TYPE_CHECKING:
    from pydantic_ai.models import Model

log = get_logger(__name__)

S = TaskStatus
IDEMPOTENCY_TTL = timedelta(hours=24)

ProjectCheck = Callable[[str], str | None]
"""Returns why a project cannot be used, or None when it can."""

RELOAD_RULES = "reload_rules"
"""Control message: every process reads team_leader.yaml again."""


@dataclass(frozen=True)
class Submission:
    task: Task
    created: bool
    """False when an Idempotency-Key returned an earlier submission."""


def request_hash(request: TaskRequest) -> str:
    body = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


class TeamLeader:
    def __init__(
        self,
        *,
        store: Store,
        broker: Broker,
        config: TeamLeaderConfig,
        config_path: Path | None = None,
        agents: Mapping[AgentType, Agent] | None = None,
        planner_model: Callable[[], Model | None] | None = None,
        planner_prompt: Path | None = None,
        project_check: ProjectCheck | None = None,
        clock: Clock | None = None,
        policy: Policy | None = None,
    ) -> None:
        self.store = store
        self.broker = broker
        self._config = config
        self.config_path = config_path
        self.agents: dict[AgentType, Agent] = dict(agents or {})
        self.clock = clock or SystemClock()
        self.policy = policy or default_policy()
        self.effects = BrokerEffects(broker, self.clock)
        self.engine = Engine(store, self.policy, self.config, self.clock, self.effects)
        self.planner = Planner(planner_model, planner_prompt)
        self.project_check = project_check
        self.sweeper = Sweeper(self.engine, store, self.effects, self.clock)
        self.executors: list[Executor] = []
        self._background: list[asyncio.Task[Any]] = []
        self.instance = uuid.uuid4().hex
        """Names this process's TeamLeader in control messages, to skip its own."""
        self._control: Subscription | None = None
        self._control_retry: asyncio.Task[None] | None = None

    # -- rules -----------------------------------------------------------------------

    def config(self) -> TeamLeaderConfig:
        return self._config

    def reload_rules(self) -> TeamLeaderConfig:
        """Read team_leader.yaml again; an invalid file is refused and the rules stay."""
        if self.config_path is None:
            raise ConfigError("no team_leader.yaml to reload from")
        if not self.config_path.is_file():
            raise ConfigError(f"{self.config_path}: file not found")
        new = load_yaml_model(self.config_path, TeamLeaderConfig)
        self._config = new
        log.info("rules reloaded", path=str(self.config_path))
        return new

    async def reload_rules_everywhere(self) -> TeamLeaderConfig:
        """Reload here (raising `ConfigError` for an invalid file), then tell every process.

        Each process reads its own copy of the file: keep them the same.
        """
        new = self.reload_rules()
        await self.broker.pubsub.publish(
            CONTROL_CHANNEL, encode_control(RELOAD_RULES, origin=self.instance)
        )
        return new

    async def follow_control(self) -> None:
        """Act on control messages of other processes (rules reloads), until `unfollow_control`.

        Tries to subscribe once now; while the broker cannot be reached, keeps trying
        in the background.
        """
        if await self._subscribe_control():
            return
        self._control_retry = asyncio.create_task(self._retry_control(), name="team-leader-control")

    async def unfollow_control(self) -> None:
        if self._control_retry is not None:
            self._control_retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._control_retry
            self._control_retry = None
        if self._control is not None:
            with contextlib.suppress(Exception):
                await self._control.close()
            self._control = None

    async def _subscribe_control(self) -> bool:
        try:
            self._control = await self.broker.pubsub.subscribe(CONTROL_CHANNEL, self._on_control)
        except Exception as exc:
            log.warning("cannot follow control messages yet; retrying", error=str(exc))
            return False
        return True

    async def _retry_control(self) -> None:
        delay = 0.5
        while not await self._subscribe_control():
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    def _on_control(self, raw: bytes) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            return
        if not isinstance(message, dict) or message.get("type") != RELOAD_RULES:
            return
        if message.get("origin") == self.instance:
            return
        try:
            self.reload_rules()
        except ConfigError as exc:
            log.warning("rules reload refused; the rules in force stay", reason=exc.message)

    def describe_rules(self) -> dict[str, Any]:
        return {
            "policy": self.policy.describe(),
            "config": self._config.model_dump(mode="json", by_alias=True),
        }

    # -- running ---------------------------------------------------------------------

    async def start(self, *, executors: int = 1, concurrency: int | None = None) -> None:
        """Run `executors` executors and the sweeper in this process."""
        limit = concurrency or self._config.concurrency.global_limit
        try:
            await self.store.warm()
        except Exception as exc:  # the work loops wait out an outage by themselves
            log.warning("could not open the database connections yet", error=str(exc))
        if self.broker.kind == "memory":
            # The in-process queue starts empty: rebuild it from the database.
            await self.sweeper.requeue_everything()
        await self.sweeper.take_over_expired_leases()
        for index in range(executors):
            executor = Executor(
                engine=self.engine,
                broker=self.broker,
                planner=self.planner,
                agents=self.agents,
                config=self.config,
                clock=self.clock,
                concurrency=limit,
                # Who holds a lease, for operators: host, process and executor.
                name=f"{socket.gethostname()}:{os.getpid()}/executor{index}",
            )
            self.executors.append(executor)
            self._background.append(asyncio.create_task(executor.run(), name=executor.owner))
        self.sweeper.reset()
        self._background.append(asyncio.create_task(self.sweeper.run(), name="sweeper"))

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking work, let running attempts finish within `grace`, hand back the rest."""
        self.sweeper.stop()
        await asyncio.gather(*(e.stop(grace) for e in self.executors))
        # The loops end at their next safe point; cancel only what overstays.
        late: set[asyncio.Task[Any]] = set()
        if self._background:
            _, late = await asyncio.wait(self._background, timeout=grace + 5.0)
        for task in late:
            task.cancel()
        for task in self._background:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("a background loop had failed", loop=task.get_name())
        self._background.clear()
        self.executors.clear()
        self.effects.cancel_timers()

    # -- tasks -----------------------------------------------------------------------

    def check(self, request: TaskRequest) -> None:
        """Refuse, with a 422, what the rules would refuse anyway."""
        config = self._config
        details: list[dict[str, Any]] = []
        if request.subtasks is not None:
            for problem in violations(request.subtasks, config):
                details.append({"field": "subtasks", "message": problem})
        if request.project_id is not None and self.project_check is not None:
            reason = self.project_check(request.project_id)
            if reason is not None:
                details.append({"field": "project_id", "message": reason})
        if details:
            raise ValidationFailed(
                f"{details[0]['field']}: {details[0]['message']}", details=details
            )

    async def submit(
        self,
        request: TaskRequest,
        user: User,
        idempotency_key: str | None = None,
        *,
        within: Within | None = None,
        audit: Callable[[Task], NewAuditEntry] | None = None,
    ) -> Submission:
        """Create the root task (or return the one this Idempotency-Key made).

        `within` runs in the creating transaction only, not on a replay; the entry
        `audit` makes for the new task is written with it (in one statement with
        the task and its first event on Postgres when there is no `within` and no
        Idempotency-Key: one round trip).
        """
        self.check(request)
        # The body's hash only matters to an Idempotency-Key.
        digest = request_hash(request) if idempotency_key is not None else ""
        try:
            with tracing.span("team_leader.submit", task_type=request.task_type):
                return await self._submit(request, user, idempotency_key, digest, within, audit)
        except IntegrityError:
            if idempotency_key is None:
                raise
            # A concurrent request with the same key won the race: answer as it did.
            async with self.store.read() as tx:
                record = await tx.idempotency.get(user.id, idempotency_key)
                if record is None:
                    raise
                return await self._replay(tx, record.request_hash, digest, record.task_id)

    async def _replay(self, tx: Any, stored: str, digest: str, task_id: uuid.UUID) -> Submission:
        if stored != digest:
            raise Conflict("this Idempotency-Key was used with a different request body")
        task = await tx.tasks.get(task_id)
        if task is None:
            raise NotFound(f"task {task_id} does not exist")
        return Submission(task, created=False)

    async def _submit(
        self,
        request: TaskRequest,
        user: User,
        key: str | None,
        digest: str,
        within: Within | None,
        audit: Callable[[Task], NewAuditEntry] | None,
    ) -> Submission:
        root = self._new_root(request, user)
        if key is not None:
            async with self.store.read() as tx:
                record = await tx.idempotency.get(user.id, key)
                if record is not None:
                    return await self._replay(tx, record.request_hash, digest, record.task_id)

        async def remember_key(tx: UnitOfWork, created: Task) -> None:
            assert key is not None
            # A concurrent request with the same key fails here, on the key's uniqueness.
            await tx.idempotency.put(user.id, key, digest, created.id, IDEMPOTENCY_TTL)
            if within is not None:
                await within(tx, created)

        created, _ = await self.engine.create_root(
            root,
            audit=audit(root) if audit is not None else None,
            within=remember_key if key is not None else within,
        )
        metrics.TASKS_SUBMITTED.labels(root.agent_type.value if root.agent_type else "auto").inc()
        return Submission(created, created=True)

    def _new_root(self, request: TaskRequest, user: User) -> Task:
        config = self._config
        now = self.clock.now()
        given = request.budget or Budget()
        budget = Budget(
            max_tokens=given.max_tokens or config.budgets.max_tokens,
            max_cost_usd=given.max_cost_usd or config.budgets.max_cost_usd,
            timeout_s=given.timeout_s or config.timeouts.task_s,
        )
        task_id = uuid.uuid4()
        return Task(
            id=task_id,
            parent_id=None,
            root_id=task_id,
            key=None,
            status=S.PENDING,
            agent_type=request.agent_type,
            task_type=request.task_type,
            task=request.task,
            complexity=request.complexity,
            priority=request.priority,
            project_id=request.project_id,
            metadata=request.metadata,
            phase=None,
            depends_on=[],
            require_approval=request.require_approval,
            budget=budget,
            plan=request.subtasks,
            webhook=request.webhook,
            attempt=1,
            version=0,
            created_by=user.id,
            created_at=now,
            updated_at=now,
            started_at=None,
            finished_at=None,
            result=None,
            error=None,
            usage=Usage(),
            deadline_at=now + timedelta(seconds=budget.timeout_s or config.timeouts.task_s),
            trace_parent=tracing.current_traceparent(),
        )

    async def _get(self, task_id: uuid.UUID) -> Task:
        async with self.store.read() as tx:
            task = await tx.tasks.get(task_id)
        if task is None:
            raise NotFound(f"task {task_id} does not exist")
        return task

    async def cancel(
        self,
        task_id: uuid.UUID,
        reason: str = "cancelled by request",
        *,
        within: Within | None = None,
    ) -> Task:
        """Cancel a root task; `within` runs in the transaction when the cancel is accepted."""
        task = await self._get(task_id)
        if task.parent_id is not None:
            raise Conflict(f"cancel the root task {task.root_id}, not one of its subtasks")
        if task.status in TERMINAL_STATUSES or task.status == S.CANCELLING:
            raise Conflict(f"the task is already {task.status}")
        (result,) = await self.engine.transition_many(
            [
                TransitionRequest(
                    task.id,
                    S.CANCELLING,
                    reason=reason,
                    updates={"error": {"code": "cancelled", "message": reason}},
                )
            ],
            root_ids=[task.root_id],
            finish=_within_accepted(within),
        )
        if not result.accepted:
            raise Conflict(result.reason or f"the task cannot be cancelled ({task.status})")
        return result.task

    async def approve(
        self,
        task_id: uuid.UUID,
        approved: bool,
        comment: str | None,
        actor: User,
        *,
        within: Within | None = None,
    ) -> Task:
        """Approve or reject a plan; `within` runs in the transaction when that happens."""
        task = await self._get(task_id)
        if task.status != S.AWAITING_APPROVAL:
            raise Conflict(f"the task is {task.status}, not awaiting approval")
        data = {"approved": approved, "comment": comment, "by": actor.username}
        if approved:
            result = await self.engine.transition_many(
                [_request(task, S.DELEGATED, f"approved by {actor.username}", event_data=data)],
                root_ids=[task.root_id],
                finish=_within_accepted(within),
            )
        else:
            message = f"plan rejected by {actor.username}" + (f": {comment}" if comment else "")
            result = await self.engine.transition_many(
                [
                    _request(
                        task,
                        S.CANCELLED,
                        "approval rejected",
                        event_data=data,
                        updates={"error": {"code": "cancelled", "message": message}},
                    )
                ],
                root_ids=[task.root_id],
                finish=_within_accepted(within),
            )
        if not result[0].accepted:
            raise Conflict(result[0].reason or "the task cannot be approved now")
        return result[0].task


def _within_accepted(
    within: Within | None,
) -> Callable[[UnitOfWork, list[TransitionResult]], Awaitable[None]] | None:
    """`within` as an engine `finish` step that runs only if the first request was accepted."""
    if within is None:
        return None
    hook = within

    async def finish(tx: UnitOfWork, results: list[TransitionResult]) -> None:
        if results and results[0].accepted:
            await hook(tx, results[0].task)

    return finish


def _request(
    task: Task,
    to: TaskStatus,
    reason: str,
    *,
    event_data: dict[str, Any] | None = None,
    updates: dict[str, Any] | None = None,
) -> TransitionRequest:
    return TransitionRequest(
        task.id, to, reason=reason, event_data=event_data or {}, updates=updates or {}
    )
