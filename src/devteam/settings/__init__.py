"""Settings from the environment (`DEVTEAM_*`, `.env`) and the YAML files in `config/`.

`load_settings()` and `load_config()` turn every wrong value into one `ConfigError`
whose message is a single line naming the variable or the file and key, so a bad
value stops start-up with a reason a person can act on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from devteam.domain.errors import ConfigError
from devteam.settings.agents import AgentsConfig
from devteam.settings.mcp_servers import McpServersConfig
from devteam.settings.security import SecurityConfig
from devteam.settings.team_leader import TeamLeaderConfig
from devteam.settings.verification import SandboxConfig, VerificationConfig

__all__ = [
    "AgentsConfig",
    "AppConfig",
    "McpServersConfig",
    "SandboxConfig",
    "SecurityConfig",
    "Settings",
    "TeamLeaderConfig",
    "VerificationConfig",
    "load_config",
    "load_settings",
]

ENV_PREFIX = "DEVTEAM_"


class Settings(BaseSettings):
    """Process settings. Every field is `DEVTEAM_<NAME>` in the environment or `.env`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        env_ignore_empty=True,
        frozen=True,
    )

    env: Literal["development", "production"] = "development"
    """`production` turns on JSON logs and refuses unsafe defaults."""
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8000

    database_url: str = "sqlite+aiosqlite:///./devteam.db"
    """`sqlite+aiosqlite:///path.db` (embedded) or `postgresql+asyncpg://user@host/db`."""
    database_pool_size: Annotated[int, Field(ge=1, le=200)] = 10
    migrate_on_start: bool = True
    """Apply database migrations when the service starts."""

    redis_url: str | None = None
    """`redis://host:6379/0` selects the Redis broker; unset uses the in-process one."""
    redis_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = "devteam"
    """Prefix of every Redis key and channel, so several deployments can share a server."""

    config_dir: Path = Path("config")
    """Folder holding team_leader.yaml, mcp_servers.yaml, security.yaml, agents.yaml and
    verification.yaml."""
    prompts_dir: Path = Path("system_prompts")
    workspaces_root: Path = Path("workspaces")
    """Projects: `project_id` names a git repository in this folder."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"
    """`auto`: JSON in production, readable console output in development."""

    max_body_bytes: Annotated[int, Field(ge=1024)] = 1024 * 1024
    cors_origins: list[str] = Field(default_factory=list)
    """Origins allowed by CORS, as a JSON list; empty keeps CORS closed."""
    hsts: bool = False
    """Send Strict-Transport-Security (turn on when served over TLS)."""

    ws_queue_size: Annotated[int, Field(ge=1, le=100_000)] = 256
    """Messages waiting to go to one WebSocket client; a subscription that finds no room
    for `ws_lag_timeout_s` is dropped with a `lagged` message."""
    ws_lag_timeout_s: Annotated[float, Field(gt=0, le=600)] = 10.0
    ws_heartbeat_s: Annotated[float, Field(gt=0, le=3600)] = 20.0
    """Seconds between `heartbeat` messages; each one also checks the client's token again."""
    ws_max_message_bytes: Annotated[int, Field(ge=256, le=16 * 1024 * 1024)] = 64 * 1024
    """Largest message a WebSocket client may send (larger: the server closes with 1009)."""
    ws_max_subscriptions: Annotated[int, Field(ge=1, le=10_000)] = 100
    """Task subscriptions one WebSocket connection may hold at once."""

    jwt_secret: SecretStr | None = None
    """HMAC key for tokens, at least 32 bytes; required in production."""
    jwt_private_key_file: Path | None = None
    jwt_public_key_file: Path | None = None

    llm_model: str | None = None
    """e.g. `anthropic:claude-sonnet-4-5` or `openai-chat:gpt-4o`; unset: no LLM."""
    llm_base_url: str | None = None
    """Base URL of an OpenAI-compatible server (Ollama, vLLM, a gateway)."""
    llm_api_key: SecretStr | None = None

    executor_concurrency: Annotated[int, Field(ge=1, le=10_000)] | None = None
    """Agent attempts one process runs at once (default: the global concurrency limit)."""
    shutdown_grace_s: Annotated[float, Field(ge=0, le=3600)] = 30.0
    """On shutdown, how long running attempts may take to finish before they are handed back."""

    metrics_token: SecretStr | None = None
    """When set, `/metrics` requires `Authorization: Bearer <token>`."""

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("use sqlite+aiosqlite:///<file> or postgresql+asyncpg://<host>/<db>")
        return value

    @field_validator("redis_url")
    @classmethod
    def _supported_redis(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("use redis://host:port/db, rediss://… or unix://…")
        return value

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


class AppConfig(BaseModel):
    """The YAML configuration, validated."""

    model_config = ConfigDict(frozen=True)

    team_leader: TeamLeaderConfig = TeamLeaderConfig()
    mcp_servers: McpServersConfig = McpServersConfig()
    security: SecurityConfig = SecurityConfig()
    agents: AgentsConfig = AgentsConfig()
    verification: VerificationConfig = VerificationConfig()


CONFIG_FILES: dict[str, type[BaseModel]] = {
    "team_leader": TeamLeaderConfig,
    "mcp_servers": McpServersConfig,
    "security": SecurityConfig,
    "agents": AgentsConfig,
    "verification": VerificationConfig,
}

M = TypeVar("M", bound=BaseModel)


def _first_error(exc: ValidationError, *, env: bool = False) -> str:
    """Render a validation error as one line: `key: problem (got value)`."""
    parts: list[str] = []
    for error in exc.errors(include_url=False):
        location = ".".join(str(p) for p in error["loc"]) or "(root)"
        if env:
            location = ENV_PREFIX + location.upper()
        problem = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            parts.append(f"{location}: required")
        elif error["type"] == "extra_forbidden":
            parts.append(f"{location}: unknown key")
        else:
            got = error.get("input")
            shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
            parts.append(f"{location}: {problem}{shown}")
    return "; ".join(parts)


def load_settings(**overrides: Any) -> Settings:
    """Read `Settings` from the environment, `.env` and explicit overrides."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(f"environment: {_first_error(exc, env=True)}") from None


def load_yaml_model(path: Path, model: type[M]) -> M:
    """Load one YAML file into `model`; a missing file gives the model's defaults."""
    if not path.exists():
        return model()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: {where}{problem}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_first_error(exc)}") from None


def load_config(config_dir: Path) -> AppConfig:
    """Load and validate every YAML file of `config_dir`."""
    if config_dir.exists() and not config_dir.is_dir():
        raise ConfigError(f"{config_dir}: DEVTEAM_CONFIG_DIR is not a folder")
    sections = {
        name: load_yaml_model(config_dir / f"{name}.yaml", model)
        for name, model in CONFIG_FILES.items()
    }
    return AppConfig.model_validate(sections)
