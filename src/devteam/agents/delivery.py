"""Delivery: a verified, approved change is pushed to the project's remote.

The last step of a plan that changes code (`delivery` phase, no LLM). The
project's `.devteam.yaml` says whether and where to deliver:

    delivery: {push: true, remote: origin, pull_request: true, base_branch: main}

For each branch the plan changed, the latest revision is pushed — only when
its checks are green (`verified`) and, where the work was reviewed, the latest
review approves. Nothing is pushed from a red or rejected change: the step
completes with `delivered: false` and the reason. With `pull_request: true`,
a pull request is opened on GitHub through its REST API (the token is read from
the environment variable that verification.yaml `delivery.token_env` names);
an open pull request for the branch is found rather than opened twice, so a
retried delivery does not fail on its own earlier success. A push or API that
fails fails the step with `delivery_failed` (retried by the retry policy).

A coder handed a root task directly (no plan, so no review) delivers its own
verified change the same way when it is done; a failure there is recorded in
its result (`delivery`) and a `task.progress` event, and the change stands.
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from devteam.agents.base import Attempt, BaseAgent
from devteam.agents.git import GitError, Repository, git
from devteam.agents.models import CodeChange, Delivery, PushedBranch, Review
from devteam.agents.reviewer import latest_changes
from devteam.domain.agents import AgentFailed
from devteam.domain.enums import AgentType
from devteam.domain.errors import DevTeamError, ErrorCode
from devteam.domain.tasks import TaskResult
from devteam.sandbox.project import DeliveryConfig, load_project_checks
from devteam.settings.verification import DeliveryServiceConfig

MAX_MESSAGE_CHARS = 300
Progress = Callable[..., Awaitable[None]]
"""`AgentContext.progress`: where delivery reports what it did."""
_REPOSITORY = re.compile(r"[:/](?P<owner>[A-Za-z0-9_.-]+)/(?P<name>[A-Za-z0-9_.-]+?)(?:\.git)?/?$")


def github_repository(url: str) -> tuple[str, str] | None:
    """`owner, name` from a remote URL (https, ssh, scp-like or git://), or None."""
    match = _REPOSITORY.search(url.strip())
    return (match["owner"], match["name"]) if match else None


def latest_review(dependencies: Mapping[str, TaskResult]) -> Review | None:
    reviews = [
        Review.model_validate(r.output)
        for r in dependencies.values()
        if r.output_type == Review.__name__
    ]
    return max(reviews, key=lambda r: r.round) if reviews else None


class GitHub:
    """The part of GitHub's REST API delivery needs: open (or find) a pull request."""

    def __init__(self, config: DeliveryServiceConfig) -> None:
        self.config = config

    def _headers(self) -> dict[str, str]:
        token = os.environ.get(self.config.token_env, "")
        if not token:
            raise AgentFailed(
                ErrorCode.DELIVERY_FAILED,
                f"a pull request needs a GitHub token: set {self.config.token_env}",
            )
        return {
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "devteam",
        }

    async def open_pull_request(
        self, owner: str, repo: str, *, head: str, base: str, title: str, body: str
    ) -> str:
        """The URL of the pull request of `head` into `base`, opened when none is."""
        base_url = self.config.github_api_url.rstrip("/")
        pulls = f"{base_url}/repos/{owner}/{repo}/pulls"
        headers = self._headers()
        async with httpx.AsyncClient(timeout=self.config.timeout_s, headers=headers) as client:
            try:
                response = await client.post(
                    pulls, json={"title": title, "head": head, "base": base, "body": body}
                )
                if response.status_code == 422:
                    # Most often: a pull request for this branch exists already.
                    existing = await client.get(
                        pulls, params={"head": f"{owner}:{head}", "base": base, "state": "open"}
                    )
                    found = existing.json() if existing.status_code == 200 else []
                    if isinstance(found, list) and found:
                        return str(found[0]["html_url"])
            except httpx.HTTPError as exc:
                raise AgentFailed(
                    ErrorCode.DELIVERY_FAILED, f"GitHub could not be reached: {exc}"
                ) from None
        if response.status_code != 201:
            raise AgentFailed(
                ErrorCode.DELIVERY_FAILED,
                f"GitHub refused the pull request ({response.status_code}): "
                + _short(_message(response)),
            )
        return str(response.json()["html_url"])


PUSH_PROTOCOLS = ("file", "git", "https", "ssh")
"""Transports a push may use: a project's remote is the operator's (its repository config
is out of the models' reach); `ext::` and other remote helpers stay refused."""


class Deliverer:
    """Pushes changes (and opens their pull requests) as a project's delivery says."""

    def __init__(
        self, config: DeliveryServiceConfig, progress: Progress, ssh_command: str | None = None
    ) -> None:
        self.config = config
        self.ssh_command = ssh_command
        """The operator's ssh command (`agents.yaml` `git.ssh_command`); None: plain `ssh`."""
        self.progress = progress

    @staticmethod
    def project_delivery(repo: Path) -> DeliveryConfig | None:
        """The project's delivery, when it asks for a push; None otherwise."""
        try:
            project = load_project_checks(repo)
        except DevTeamError as exc:
            raise AgentFailed(ErrorCode.VALIDATION_ERROR, exc.message) from None
        config = project.delivery
        return config if config is not None and config.push else None

    async def deliver(
        self,
        repo: Path,
        config: DeliveryConfig,
        changes: Mapping[str, CodeChange],
        review: Review | None,
        title: str,
    ) -> Delivery:
        """Push every change (latest revision per branch) when all are verified and the
        review (if any) approves; `AgentFailed(delivery_failed)` when a push or the API
        fails."""
        changes = {k: c for k, c in changes.items() if c.head_commit is not None}
        if not changes:
            return _not_delivered("there is no code change to deliver", config.remote)
        red = sorted(k for k, c in changes.items() if not c.verified)
        if red:
            return _not_delivered(f"not pushed: the checks of {', '.join(red)} fail", config.remote)
        if review is not None and review.verdict != "approve":
            return _not_delivered(
                f"not pushed: review round {review.round} requested changes", config.remote
            )
        pushed: list[PushedBranch] = []
        for key in sorted(changes):
            change = changes[key]
            assert change.head_commit is not None
            await self._push(repo, config, change.branch, change.head_commit)
            await self.progress("branch pushed", branch=change.branch, remote=config.remote)
            url = None
            if config.pull_request:
                url = await self._pull_request(repo, config, change.branch, title, key)
                await self.progress("pull request opened", url=url)
            pushed.append(
                PushedBranch(branch=change.branch, commit=change.head_commit, pull_request_url=url)
            )
        names = ", ".join(p.branch for p in pushed)
        return Delivery(
            summary=f"Pushed {names} to {config.remote}"
            + (" and opened pull requests" if config.pull_request else ""),
            delivered=True,
            remote=config.remote,
            branches=pushed,
        )

    async def _push(self, repo: Path, config: DeliveryConfig, branch: str, commit: str) -> None:
        try:
            await git(
                Repository.checkout(repo),
                "push",
                "--quiet",
                "--no-recurse-submodules",
                config.remote,
                f"{commit}:refs/heads/{branch}",
                protocols=PUSH_PROTOCOLS,
                ssh_command=self.ssh_command,
            )
        except GitError as exc:
            raise AgentFailed(
                ErrorCode.DELIVERY_FAILED,
                f"pushing {branch} to {config.remote} failed: {_short(exc.stderr)}",
            ) from None

    async def _pull_request(
        self, repo: Path, config: DeliveryConfig, branch: str, task: str, key: str
    ) -> str:
        checkout = Repository.checkout(repo)
        url = (await git(checkout, "remote", "get-url", config.remote, check=False)).strip()
        repository = github_repository(url)
        if repository is None:
            raise AgentFailed(
                ErrorCode.DELIVERY_FAILED,
                f"cannot tell the GitHub repository from the remote {config.remote} ({url!r})",
            )
        base = (
            config.base_branch
            or (
                await git(checkout, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
            ).strip()
        )
        if not base:
            raise AgentFailed(
                ErrorCode.DELIVERY_FAILED,
                "no base branch for the pull request: set delivery.base_branch",
            )
        title = task.strip().splitlines()[0][:120] if task.strip() else branch
        body = f"Opened by DevTeam: the change `{key}` on `{branch}`, checked and reviewed."
        return await GitHub(self.config).open_pull_request(
            *repository, head=branch, base=base, title=title, body=body
        )


class DeliveryAgent(BaseAgent[Delivery]):
    agent_type = AgentType.DELIVERY
    description = (
        "Pushes the verified, approved changes of the plan to the project's remote and "
        "opens pull requests where configured (no LLM)."
    )
    prompt_name = "delivery"
    output_model = Delivery
    needs_llm = False

    async def work(self, attempt: Attempt) -> Delivery:
        spec = attempt.spec
        repo = self.kit.workspaces.require(spec.project_id, "delivery")
        config = Deliverer.project_delivery(repo)
        if config is None:
            return _not_delivered("delivery is not configured (.devteam.yaml `delivery.push`)")
        dependencies = attempt.context.dependencies
        deliverer = Deliverer(
            self.kit.verification.delivery,
            attempt.context.progress,
            self.kit.config.git.ssh_command,
        )
        return await deliverer.deliver(
            repo, config, latest_changes(dependencies), latest_review(dependencies), spec.root_task
        )


def _not_delivered(reason: str, remote: str | None = None) -> Delivery:
    return Delivery(summary=reason, delivered=False, remote=remote, reason=reason)


def _message(response: httpx.Response) -> str:
    try:
        body: Any = response.json()
    except ValueError:
        return response.text
    return str(body.get("message", body)) if isinstance(body, dict) else str(body)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"
