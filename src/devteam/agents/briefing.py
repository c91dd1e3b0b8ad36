"""The user prompt of an attempt: the task, what the user asked for, and earlier results.

An agent works from the results of the tasks it depends on and of earlier
phases (`AgentContext.dependencies`): the backend coder reads the research
report and the codebase report. Each result is given with its summary and its
typed output as JSON, cut to `context.max_dependency_chars` of agents.yaml.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from devteam.domain.tasks import TaskResult, TaskSpec


def render_result(key: str, result: TaskResult, limit: int) -> str:
    body = json.dumps(result.output, indent=1, ensure_ascii=False)
    if len(body) > limit:
        body = body[:limit] + f"\n... [cut: {len(body) - limit} more characters]"
    kind = result.output_type or "result"
    lines = [f"### {key} ({kind})"]
    if result.summary:
        lines.append(f"Summary: {result.summary}")
    lines += ["```json", body, "```"]
    return "\n".join(lines)


def briefing(
    spec: TaskSpec,
    dependencies: Mapping[str, TaskResult],
    *,
    limit: int,
    workspace: str | None = None,
    extra: str = "",
) -> str:
    """The prompt that starts an attempt."""
    parts = [f"## Your task\n{spec.task}"]
    if spec.root_task.strip() != spec.task.strip():
        parts.append(f"## What the user asked for, as a whole\n{spec.root_task}")
    details = [f"- task type: {spec.task_type}", f"- complexity: {spec.complexity} of 10"]
    if spec.project_id:
        details.append(f"- project: {spec.project_id}")
    if workspace:
        details.append(
            f"- workspace: {workspace} (file tools take paths relative to it; "
            f"git tools take repo_path={workspace})"
        )
    if spec.attempt > 1:
        details.append(f"- attempt {spec.attempt}: an earlier attempt failed; start afresh")
    # Keys starting `__` are DevTeam's own (users cannot set them): not for the model.
    metadata = {k: v for k, v in spec.metadata.items() if not k.startswith("__")}
    if metadata:
        details.append(f"- metadata: {json.dumps(metadata, ensure_ascii=False)}")
    parts.append("## Details\n" + "\n".join(details))
    if dependencies:
        rendered = [render_result(k, dependencies[k], limit) for k in sorted(dependencies)]
        parts.append("## Results of earlier tasks\n\n" + "\n\n".join(rendered))
    if extra:
        parts.append(extra)
    return "\n\n".join(parts)
