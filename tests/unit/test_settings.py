"""Settings and YAML config: defaults, overrides, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from devteam.domain.errors import ConfigError
from devteam.settings import AppConfig, load_config, load_settings
from devteam.settings.team_leader import TeamLeaderConfig

REPO = Path(__file__).resolve().parents[2]


def test_defaults_are_the_embedded_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DEVTEAM_DATABASE_URL", "DEVTEAM_REDIS_URL", "DEVTEAM_ENV"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(_env_file=None)
    assert settings.env == "development"
    assert settings.database_url == "sqlite+aiosqlite:///./devteam.db"
    assert settings.redis_url is None


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVTEAM_ENV", "production")
    monkeypatch.setenv("DEVTEAM_PORT", "9000")
    monkeypatch.setenv("DEVTEAM_REDIS_URL", "redis://cache:6379/1")
    settings = load_settings(_env_file=None)
    assert settings.is_production
    assert settings.port == 9000
    assert settings.redis_url == "redis://cache:6379/1"


def test_dotenv_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEVTEAM_PORT", raising=False)
    env = tmp_path / ".env"
    env.write_text("DEVTEAM_PORT=8123\n")
    assert load_settings(_env_file=env).port == 8123


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("DEVTEAM_PORT", "eighty", "DEVTEAM_PORT: Input should be a valid integer"),
        ("DEVTEAM_ENV", "staging", "DEVTEAM_ENV: Input should be 'development' or 'production'"),
        ("DEVTEAM_DATABASE_URL", "mysql://x", "DEVTEAM_DATABASE_URL: use sqlite+aiosqlite"),
        ("DEVTEAM_REDIS_URL", "http://x", "DEVTEAM_REDIS_URL: use redis://"),
    ],
    ids=["port", "env", "database", "redis"],
)
def test_bad_environment_value_is_one_line(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    message = caught.value.message
    assert "\n" not in message
    assert message.startswith("environment: ")
    assert expected in message


def test_repository_config_is_valid() -> None:
    config = load_config(REPO / "config")
    assert isinstance(config, AppConfig)
    assert config.team_leader.complexity.budget_per_root == 25
    assert config.team_leader.concurrency.global_limit == 10


def test_missing_files_give_defaults(tmp_path: Path) -> None:
    assert load_config(tmp_path) == AppConfig()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("concurrency:\n  global: -1\n", "concurrency.global: Input should be greater than 0"),
        ("retry:\n  maximum_attempts: many\n", "retry.maximum_attempts: Input should be a valid"),
        ("complexity:\n  budget_per_rot: 25\n", "complexity.budget_per_rot: unknown key"),
        ("routing:\n  fallback: designer\n", "routing.fallback: Input should be 'research'"),
        ("phases: [research\n", "line 2"),
        ("- just\n- a list\n", "the top level must be a mapping"),
        (
            "retry:\n  initial_interval_s: 10\n  maximum_interval_s: 1\n",
            "retry: maximum_interval_s must be at least initial_interval_s",
        ),
    ],
    ids=["negative", "type", "unknown-key", "enum", "yaml-syntax", "not-a-mapping", "cross-field"],
)
def test_bad_yaml_value_names_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "team_leader.yaml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    message = caught.value.message
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / 'team_leader.yaml'}: ")
    assert expected in message


def test_bad_rate_limit_in_security_yaml(tmp_path: Path) -> None:
    (tmp_path / "security.yaml").write_text("rate_limits:\n  reads_per_user: lots\n")
    with pytest.raises(ConfigError, match=r"rate_limits\.reads_per_user: not a rate limit"):
        load_config(tmp_path)


def test_bad_mcp_transport(tmp_path: Path) -> None:
    (tmp_path / "mcp_servers.yaml").write_text(
        "servers:\n  git:\n    transport:\n      type: carrier-pigeon\n"
    )
    with pytest.raises(ConfigError, match=r"mcp_servers.yaml: servers.git.transport"):
        load_config(tmp_path)


def test_config_models_are_immutable() -> None:
    config = TeamLeaderConfig()
    with pytest.raises(ValueError, match="frozen"):
        config.phases = []  # type: ignore[misc]


def test_env_example_lists_every_setting() -> None:
    from devteam.settings import Settings

    listed = {
        line.split("=", 1)[0]
        for line in (REPO / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    expected = {f"DEVTEAM_{name.upper()}" for name in Settings.model_fields}
    assert listed == expected
