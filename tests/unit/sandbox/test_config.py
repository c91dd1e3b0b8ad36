"""config/verification.yaml: the shipped sandbox section, and refused values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from devteam.domain.errors import ConfigError
from devteam.sandbox import Sandbox, SandboxLimits
from devteam.settings import SandboxConfig, load_config

REPO = Path(__file__).resolve().parents[3]


def test_shipped_defaults_are_the_library_defaults() -> None:
    shipped = load_config(REPO / "config").verification.sandbox
    assert shipped == SandboxConfig()
    assert (shipped.isolation, shipped.setup_network) == ("bubblewrap", False)
    limits = Sandbox.from_config(REPO, shipped).limits
    assert limits == SandboxLimits()
    assert set(dataclasses.asdict(limits)) <= set(SandboxConfig.model_fields)


def test_from_config_carries_every_setting(tmp_path: Path) -> None:
    config = SandboxConfig(
        isolation="none", bwrap_path="/opt/bwrap", read_only_paths=["/srv/toolchain"],
        timeout_s=5, cpu_s=6, memory_mb=70, max_processes=8, output_bytes=9000, file_size_mb=10,
    )  # fmt: skip
    sandbox = Sandbox.from_config(tmp_path, config)
    assert (sandbox.isolation, sandbox.bwrap_path) == ("none", "/opt/bwrap")
    assert sandbox.read_only_paths == ("/srv/toolchain",)
    assert sandbox.limits == SandboxLimits(5, 6, 70, 8, 9000, 10)


@pytest.mark.parametrize(
    ("yaml", "reason"),
    [
        ("sandbox: {isolation: docker}", "sandbox.isolation: Input should be 'bubblewrap' or"),
        ("sandbox: {timeout_s: 0}", "sandbox.timeout_s: Input should be greater than 0"),
        ("sandbox: {read_only_paths: [opt/go]}", "'opt/go': use an absolute path"),
        ("sandbox: {memroy_mb: 10}", "sandbox.memroy_mb: unknown key"),
        ("sandboxes: {}", "sandboxes: unknown key"),
    ],
)
def test_bad_values_stop_start_up_naming_the_key(tmp_path: Path, yaml: str, reason: str) -> None:
    (tmp_path / "verification.yaml").write_text(yaml + "\n")
    with pytest.raises(ConfigError) as raised:
        load_config(tmp_path)
    assert raised.value.message.startswith(f"{tmp_path / 'verification.yaml'}: ")
    assert reason in raised.value.message
