"""System prompts, read from `DEVTEAM_PROMPTS_DIR` for each task.

A prompt is read again for every attempt, so an edited file is used from the
next task on without a restart; its content hash goes into the task result
(`prompt_version`), so a result can always be traced to the prompt behind it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from devteam.domain.agents import AgentFailed
from devteam.domain.errors import ErrorCode


@dataclass(frozen=True, slots=True)
class Prompt:
    name: str
    text: str
    version: str
    """`sha256:` and the first 16 hex digits of the file's content hash."""


def prompt_version(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


class PromptStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, name: str) -> Path:
        return self.directory / f"{name}.md"

    def load(self, name: str) -> Prompt:
        """The prompt `name` as it is on disk now; a missing one stops the attempt for good."""
        path = self.path(name)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise AgentFailed(
                ErrorCode.AGENT_UNAVAILABLE,
                f"cannot read the system prompt {path}: {exc.strerror or exc}",
            ) from None
        if not text.strip():
            raise AgentFailed(ErrorCode.AGENT_UNAVAILABLE, f"the system prompt {path} is empty")
        return Prompt(name, text, prompt_version(text))
