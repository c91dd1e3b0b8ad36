"""The LLM layer without a network: model settings, prices, retry policy, agents.yaml."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic_ai import Agent
from pydantic_ai.exceptions import (
    ModelConnectionError,
    ModelHTTPError,
    ModelQuotaExceededError,
    ModelRateLimitError,
)
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage

from devteam.agents.llm import check_models
from devteam.agents.metering import Pricing
from devteam.agents.retrying import RetryingModel, is_retryable
from devteam.domain.errors import ConfigError
from devteam.settings import AgentsConfig, Settings, load_config
from devteam.settings.agents import LlmRetryConfig, Price


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("values", "models", "expected"),
    [
        (
            {"llm_model": "nosuch:model"},
            {},
            "environment: DEVTEAM_LLM_MODEL: unknown model provider 'nosuch' (got 'nosuch:model')",
        ),
        (
            {"llm_model": "gpt-4o"},
            {},
            "environment: DEVTEAM_LLM_MODEL: use <provider>:<model>",
        ),
        (
            {"llm_model": "openai-chat:gpt-4o"},
            {},
            "DEVTEAM_LLM_MODEL: openai-chat:gpt-4o needs an API key: set DEVTEAM_LLM_API_KEY",
        ),
        (
            {"llm_model": "groq:llama-3", "llm_base_url": "http://localhost:11434/v1"},
            {},
            "environment: DEVTEAM_LLM_BASE_URL: an OpenAI-compatible server serves openai-chat:",
        ),
        (
            {"llm_model": "openai-chat:llama3", "llm_base_url": "http://localhost:11434/v1"},
            {"research": "anthropic:claude-haiku-4-5"},
            "config/agents.yaml: models.research: anthropic:claude-haiku-4-5 needs an API key",
        ),
    ],
    ids=["unknown-provider", "no-provider", "no-key", "base-url", "override"],
)
def test_a_model_that_cannot_work_stops_start_up_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
    values: dict[str, str],
    models: dict[str, str],
    expected: str,
) -> None:
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    config = AgentsConfig.model_validate({"models": models})
    with pytest.raises(ConfigError) as caught:
        check_models(settings(**values), config, Path("config/agents.yaml"))
    assert expected in caught.value.message
    assert "\n" not in caught.value.message


def test_a_model_with_a_key_or_a_local_server_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    check_models(settings(llm_model="openai-chat:gpt-4o", llm_api_key="sk-test"), AgentsConfig())
    check_models(
        settings(llm_model="openai-chat:llama3", llm_base_url="http://localhost:11434/v1"),
        AgentsConfig(),
    )
    check_models(settings(), AgentsConfig())  # no LLM at all


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rate_limit: lots\n", "rate_limit: not a rate limit"),
        ("models:\n  research: gpt-4o\n", "models: research: use <provider>:<model>"),
        ("models:\n  designer: openai-chat:gpt-4o\n", "models.designer"),
        ("limits:\n  research: {max_requests: 0}\n", "limits.research.max_requests"),
        ("retry:\n  initial_backoff_s: 10\n  max_backoff_s: 1\n", "max_backoff_s must be at least"),
        ("prices:\n  x:y: {input: -1, output: 1}\n", "prices.x:y.input"),
        ("git:\n  branch_prefix: devteam\n", "git.branch_prefix"),
        ("requst_timeout_s: 3\n", "requst_timeout_s: unknown key"),
    ],
)
def test_a_bad_agents_yaml_value_names_file_and_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    (tmp_path / "agents.yaml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert caught.value.message.startswith(f"{tmp_path / 'agents.yaml'}: ")
    assert expected in caught.value.message
    assert "\n" not in caught.value.message


def test_the_shipped_agents_yaml() -> None:
    config = load_config(Path(__file__).resolve().parents[3] / "config").agents
    assert config.models == {} and config.rate_limit is None
    assert config.limits_for("backend").max_requests == 40  # type: ignore[arg-type]
    assert config.prices["anthropic:claude-sonnet-4-5"] == Price(
        input=3.0, output=15.0, cached_input=0.3
    )


def response(
    input_tokens: int, output_tokens: int, cached: int = 0, model: str = "m"
) -> ModelResponse:
    return ModelResponse(
        parts=[TextPart("ok")],
        usage=RequestUsage(
            input_tokens=input_tokens, output_tokens=output_tokens, cache_read_tokens=cached
        ),
        model_name=model,
    )


def test_prices_turn_tokens_into_dollars() -> None:
    pricing = Pricing(
        {
            "openai-chat:gpt-4o": Price(input=2.5, output=10.0, cached_input=1.25),
            "llama3": Price(input=0.0, output=0.0),
        }
    )
    # 1000 fresh and 1000 cached input tokens, 500 output tokens.
    cost = pricing.cost("openai-chat:gpt-4o", response(2000, 500, cached=1000))
    assert cost == pytest.approx((1000 * 2.5 + 1000 * 1.25 + 500 * 10.0) / 1e6)
    assert pricing.cost("openai-chat:llama3", response(5000, 5000)) == 0.0  # by bare name
    assert pricing.cost("openai-chat:no-such-model", response(10, 10, model="no-such")) == 0.0


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (ModelHTTPError(429, "m"), True),
        (ModelHTTPError(500, "m"), True),
        (ModelHTTPError(503, "m"), True),
        (ModelHTTPError(400, "m"), False),
        (ModelHTTPError(401, "m"), False),
        (
            ModelHTTPError.for_category(ModelQuotaExceededError, status_code=429, model_name="m"),
            False,
        ),
        (ModelRateLimitError("m", "slow down"), True),
        (ModelConnectionError("m", "connection reset", phase="read"), True),
        (ValueError("a bug"), False),
    ],
    ids=["429", "500", "503", "400", "401", "quota", "rate-limit", "connection", "other"],
)
def test_which_failures_are_retried(error: BaseException, retryable: bool) -> None:
    assert is_retryable(error) is retryable


async def test_backoff_follows_the_policy_and_the_providers_retry_after() -> None:
    failures: list[BaseException] = [
        ModelHTTPError(429, "m", headers={"retry-after": "2"}),
        ModelHTTPError(500, "m"),
        ModelHTTPError(502, "m"),
    ]

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if failures:
            raise failures.pop(0)
        return ModelResponse(parts=[TextPart("done")])

    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    policy = LlmRetryConfig(
        max_attempts=4, initial_backoff_s=1.0, multiplier=3.0, max_backoff_s=5.0, jitter_s=0.0
    )
    result = await Agent(RetryingModel(FunctionModel(answer), policy, sleep=sleep)).run("hi")
    assert result.output == "done"
    assert waits == [2.0, 3.0, 5.0]  # Retry-After, then 1 x 3 and 1 x 9 capped at 5


async def test_retrying_gives_up_after_the_last_attempt() -> None:
    calls = 0

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        nonlocal calls
        calls += 1
        raise ModelHTTPError(503, "m")

    async def sleep(seconds: float) -> None:
        return None

    policy = LlmRetryConfig(max_attempts=3, jitter_s=0.0)
    with pytest.raises(ModelHTTPError):
        await Agent(RetryingModel(FunctionModel(answer), policy, sleep=sleep)).run("hi")
    assert calls == 3


def test_the_app_refuses_to_start_with_a_model_it_cannot_use(
    make_settings: Callable[..., Settings],
) -> None:
    from devteam.app import create_app

    with pytest.raises(ConfigError, match="DEVTEAM_LLM_MODEL: unknown model provider 'nosuch'"):
        create_app(make_settings(llm_model="nosuch:model"))
