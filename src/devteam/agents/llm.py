"""The LLMs: pydantic-ai models built from the settings, wrapped for each run.

`DEVTEAM_LLM_MODEL` names the model every agent and the planner use
(`anthropic:<model>`, `openai-chat:<model>`, `openai:<model>`, or any other
pydantic-ai model string); `models` in agents.yaml overrides it per agent type
(and `team_leader` for the planner). `DEVTEAM_LLM_BASE_URL` points the
OpenAI-style models (`openai-chat:`, `openai:`) at an OpenAI-compatible server —
Ollama, vLLM, a gateway, the tests' fake. `DEVTEAM_LLM_API_KEY` is the key the
OpenAI-style and Anthropic models send; unset, each provider's own variable
(`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`) serves, which is how one deployment
mixes providers.

One provider model (and its HTTP client) is built per model string when the
process starts, so a wrong model string or a missing key stops start-up; each
run gets it wrapped, outermost first, in

    RetryingModel      429, 5xx and lost requests again, with backoff (agents.yaml `retry`)
    RateLimitedModel   the provider's rate limit, shared through the broker
    MeteredModel       usage, cost and metrics of each request, to the attempt's meter
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from limits.aio.storage import Storage

from devteam.agents.metering import Pricing, UsageMeter
from devteam.agents.ratelimit import ProviderRateLimit
from devteam.domain.errors import ConfigError
from devteam.settings import Settings
from devteam.settings.agents import PLANNER, AgentsConfig

if TYPE_CHECKING:
    from pydantic_ai.models import Model

# pydantic-ai is imported where a model is built or wrapped: with no LLM configured,
# the service starts without loading the LLM stack.

OPENAI_STYLE = ("openai-chat", "openai")
NO_KEY = "not-needed"
"""Sent as the key to an OpenAI-compatible server when none is set (local servers need none)."""


class ModelSetupError(ValueError):
    """A model string that cannot be turned into a model."""


def provider_of(model: str) -> str:
    return model.split(":", 1)[0]


def check_model(model: str, *, base_url: str | None, api_key: str | None) -> None:
    """Refuse, with the reason, a model string that cannot work with these settings.

    `base_url` is the OpenAI-compatible server; it serves OpenAI-style models only.
    """
    provider, _, name = model.partition(":")
    if not name:
        raise ModelSetupError("use <provider>:<model>, e.g. anthropic:claude-sonnet-4-5")
    if provider in OPENAI_STYLE:
        if not (api_key or base_url or os.environ.get("OPENAI_API_KEY")):
            raise ModelSetupError(
                f"{model} needs an API key: set DEVTEAM_LLM_API_KEY (or OPENAI_API_KEY)"
            )
    elif provider == "anthropic":
        if not (api_key or _anthropic_credentials_in_environment()):
            raise ModelSetupError(
                f"{model} needs an API key: set DEVTEAM_LLM_API_KEY (or ANTHROPIC_API_KEY)"
            )
    else:
        try:
            from pydantic_ai.providers import infer_provider_class

            infer_provider_class(provider)
        except ValueError:
            raise ModelSetupError(f"unknown model provider {provider!r}") from None


def build_model(
    model: str,
    *,
    base_url: str | None,
    api_key: str | None,
    timeout: float,
) -> tuple[Model, Callable[[], Awaitable[None]] | None]:
    """The pydantic-ai model for a model string, and how to close its client (if we own one).

    The SDK clients are built with `max_retries=0`: `RetryingModel` owns retrying.
    """
    check_model(model, base_url=base_url, api_key=api_key)
    provider, _, name = model.partition(":")
    if provider in OPENAI_STYLE:
        from openai import AsyncOpenAI
        from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
        from pydantic_ai.providers.openai import OpenAIProvider

        client = AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or (NO_KEY if base_url else None),
            max_retries=0,
            timeout=timeout,
        )
        openai_provider = OpenAIProvider(openai_client=client)
        built: Model
        if provider == "openai-chat":
            built = OpenAIChatModel(name, provider=openai_provider)
        else:
            built = OpenAIResponsesModel(name, provider=openai_provider)
        return built, client.close
    if provider == "anthropic":
        from anthropic import AsyncAnthropic
        from pydantic_ai.models.anthropic import AnthropicModel
        from pydantic_ai.providers.anthropic import AnthropicProvider

        anthropic_client = AsyncAnthropic(api_key=api_key, max_retries=0, timeout=timeout)
        return (
            AnthropicModel(name, provider=AnthropicProvider(anthropic_client=anthropic_client)),
            anthropic_client.close,
        )
    try:
        from pydantic_ai.models import infer_model

        return infer_model(model), None
    except Exception as exc:
        raise ModelSetupError(str(exc).splitlines()[0]) from None


def _models_in_use(
    settings: Settings, config: AgentsConfig, config_file: Path | None
) -> list[tuple[str, str]]:
    """(where it is set, model string) of every model in use."""
    where = str(config_file or "agents.yaml")
    wanted = [("environment: DEVTEAM_LLM_MODEL", settings.llm_model)]
    wanted += [(f"{where}: models.{role}", model) for role, model in config.models.items()]
    return [(origin, model) for origin, model in wanted if model is not None]


def check_models(settings: Settings, config: AgentsConfig, config_file: Path | None = None) -> None:
    """Refuse at start-up, in one line naming the setting, a model that cannot work."""
    api_key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
    model = settings.llm_model
    if settings.llm_base_url and model and provider_of(model) not in OPENAI_STYLE:
        raise ConfigError(
            "environment: DEVTEAM_LLM_BASE_URL: an OpenAI-compatible server serves "
            f"openai-chat: and openai: models, not {model!r} (DEVTEAM_LLM_MODEL)"
        )
    for origin, model in _models_in_use(settings, config, config_file):
        try:
            check_model(model, base_url=settings.llm_base_url, api_key=api_key)
        except ModelSetupError as exc:
            raise ConfigError(f"{origin}: {exc} (got {model!r})") from None


def _anthropic_credentials_in_environment() -> bool:
    return bool(os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_AUTH_TOKEN"))


class LanguageModels:
    """The models of one process: who uses which, built once, wrapped for each run."""

    def __init__(
        self,
        settings: Settings,
        config: AgentsConfig,
        rate_limit_storage: Storage | None = None,
        *,
        config_file: Path | None = None,
    ) -> None:
        self.config = config
        self.pricing = Pricing(config.prices)
        self._default = settings.llm_model
        self._models: dict[str, Model] = {}
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._limits: dict[str, ProviderRateLimit] = {}
        """Model string -> the rate limit of its provider."""
        by_provider: dict[str, ProviderRateLimit] = {}
        check_models(settings, config, config_file)
        api_key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        for origin, model in _models_in_use(settings, config, config_file):
            if model in self._models:
                continue
            try:
                built, closer = build_model(
                    model,
                    base_url=settings.llm_base_url,
                    api_key=api_key,
                    timeout=config.request_timeout_s,
                )
            except ModelSetupError as exc:
                raise ConfigError(f"{origin}: {exc} (got {model!r})") from None
            self._models[model] = built
            if closer is not None:
                self._closers.append(closer)
            if config.rate_limit is not None and rate_limit_storage is not None:
                provider = provider_of(model)
                key = (settings.llm_base_url if provider in OPENAI_STYLE else None) or provider
                if key not in by_provider:
                    by_provider[key] = ProviderRateLimit(rate_limit_storage, config.rate_limit, key)
                self._limits[model] = by_provider[key]

    def model_name(self, role: str) -> str | None:
        """The model string `role` (an agent type, or `team_leader`) uses; None: no LLM."""
        override: str | None = self.config.models.get(role)  # type: ignore[call-overload]
        return override or self._default

    def configured(self, role: str) -> bool:
        return self.model_name(role) is not None

    def for_run(self, role: str, meter: UsageMeter | None = None) -> Model | None:
        """The model of `role`, wrapped for one run; None when no LLM is configured."""
        name = self.model_name(role)
        if name is None:
            return None
        from devteam.agents.metered_model import MeteredModel
        from devteam.agents.ratelimited_model import RateLimitedModel
        from devteam.agents.retrying import RetryingModel

        model: Model = MeteredModel(
            self._models[name], label=name, agent=role, pricing=self.pricing, meter=meter
        )
        if (limit := self._limits.get(name)) is not None:
            model = RateLimitedModel(model, limit)
        return RetryingModel(model, self.config.retry)

    def planner_model(self) -> Model | None:
        """The TeamLeader's planner model (a factory: called for each plan)."""
        return self.for_run(PLANNER)

    async def close(self) -> None:
        closers, self._closers = self._closers, []
        for close in closers:
            with contextlib.suppress(Exception):
                await close()
