"""`config/verification.yaml`: how DevTeam runs and checks a project's code.

`sandbox` sets how commands run (isolation and limits). The verification loop,
review and delivery add their own sections next to it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from devteam.settings._base import ConfigModel


class SandboxConfig(ConfigModel):
    isolation: Literal["bubblewrap", "none"] = "bubblewrap"
    """`bubblewrap`: every command runs isolated (refused with sandbox_unavailable where
    bwrap cannot run). `none`: commands run unisolated, with a warning in every result."""
    bwrap_path: Annotated[str, Field(min_length=1)] = "bwrap"
    """The bubblewrap program: a name looked up on PATH, or an absolute path."""
    setup_network: bool = False
    """Whether a project's `setup` commands may reach the network (checks never may)."""
    read_only_paths: list[str] = Field(default_factory=list)
    """Extra host folders visible (read-only) inside the sandbox, e.g. a toolchain in /opt.
    /usr, /etc (minus what only root may read) and /opt are always visible."""
    timeout_s: Annotated[float, Field(gt=0, le=24 * 3600)] = 300.0
    """Wall-clock time of one command; past it the whole process tree is killed."""
    cpu_s: Annotated[int, Field(gt=0)] = 600
    """CPU seconds of each process (RLIMIT_CPU)."""
    memory_mb: Annotated[int, Field(ge=16)] = 2048
    """Address space of each process, in MiB (RLIMIT_AS)."""
    max_processes: Annotated[int, Field(ge=1, le=1_000_000)] = 256
    """Processes at once inside one sandbox (RLIMIT_NPROC)."""
    output_bytes: Annotated[int, Field(ge=1024)] = 1_000_000
    """Combined stdout and stderr kept per command (its start and its end)."""
    file_size_mb: Annotated[int, Field(ge=1)] = 1024
    """Largest file a command may write, in MiB (RLIMIT_FSIZE)."""

    @field_validator("read_only_paths")
    @classmethod
    def _absolute(cls, paths: list[str]) -> list[str]:
        for path in paths:
            if not path.startswith("/"):
                raise ValueError(f"{path!r}: use an absolute path")
        return paths


class VerifyConfig(ConfigModel):
    max_fix_rounds: Annotated[int, Field(ge=0, le=20)] = 3
    """Times a coder gets its newly failing checks back to fix them, within one attempt."""
    require_green: bool = False
    """A change still red after the last round fails with `checks_failed` (false: it
    completes with `verified: false`, and is never delivered)."""
    output_tail_chars: Annotated[int, Field(ge=200, le=100_000)] = 4000
    """Of a check's output, the end kept in the result and sent back to the coder."""
    run_setup: bool = True
    """Run the project's `setup` commands in a coder's worktree before its checks."""


class DeliveryServiceConfig(ConfigModel):
    github_api_url: Annotated[str, Field(pattern=r"^https?://")] = "https://api.github.com"
    """GitHub's REST API (GitHub Enterprise: `https://HOST/api/v3`)."""
    token_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = "GITHUB_TOKEN"
    """The environment variable holding the token pull requests are opened with."""
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 30.0
    """One request to the API."""


class VerificationConfig(ConfigModel):
    sandbox: SandboxConfig = SandboxConfig()
    verify: VerifyConfig = VerifyConfig()
    delivery: DeliveryServiceConfig = DeliveryServiceConfig()
