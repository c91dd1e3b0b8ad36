""".devteam.yaml: strict parsing; without it, checks detected from the project's files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devteam.domain.errors import ErrorCode, InvalidProjectConfig
from devteam.sandbox import DeliveryConfig, ProjectChecks, load_project_checks


def project(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return tmp_path


# -- the file ------------------------------------------------------------------------


def test_the_file_is_read_whole(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {
            ".devteam.yaml": (
                'setup: ["python -m venv .venv", ".venv/bin/pip install -e .[test]"]\n'
                'checks: {test: "python -m unittest discover -s tests", lint: "ruff check ."}\n'
                "delivery: {push: true, remote: origin}\n"
            ),
            "go.mod": "module example.com/x\n",
        },
    )
    assert load_project_checks(root) == ProjectChecks(
        setup=["python -m venv .venv", ".venv/bin/pip install -e .[test]"],
        checks={"test": "python -m unittest discover -s tests", "lint": "ruff check ."},
        delivery=DeliveryConfig(push=True, remote="origin"),
        source="file",
        detected_from=[".devteam.yaml"],
    )


def test_every_key_is_optional(tmp_path: Path) -> None:
    checks = load_project_checks(project(tmp_path, {".devteam.yaml": "# nothing to check\n"}))
    assert (checks.source, checks.setup, checks.checks, checks.delivery) == ("file", [], {}, None)
    assert not checks.verifiable


def test_delivery_defaults(tmp_path: Path) -> None:
    root = project(tmp_path, {".devteam.yaml": "delivery: {pull_request: true}\n"})
    assert load_project_checks(root).delivery == DeliveryConfig(
        push=False, remote="origin", pull_request=True, base_branch=None
    )


MALFORMED = [
    pytest.param("checks: [", "line 1", id="yaml-syntax"),
    pytest.param("- test\n", "the top level must be a mapping", id="not-a-mapping"),
    pytest.param("check: {test: pytest}\n", "check: unknown key", id="unknown-key"),
    pytest.param("checks: {test: ''}\n", "checks.test", id="empty-command"),
    pytest.param("checks: {test: '   '}\n", "blank", id="blank-command"),
    pytest.param("checks: {test: 42}\n", "checks.test", id="number-command"),
    pytest.param("checks: {'bad name': pytest}\n", "'bad name' is not a valid check name",
                 id="check-name-space"),
    pytest.param("checks: {../x: pytest}\n", "'../x' is not a valid check name",
                 id="check-name-slash"),
    pytest.param(f"checks: {{{'a' * 65}: pytest}}\n", "checks", id="check-name-long"),
    pytest.param("setup: make\n", "setup: Input should be a valid list", id="setup-string"),
    pytest.param("setup: [[make]]\n", "setup.0", id="setup-nested"),
    pytest.param("delivery: {push: yes-please}\n", "delivery.push", id="delivery-push"),
    pytest.param("delivery: {remote: 'a b'}\n", "delivery.remote", id="delivery-remote"),
    pytest.param("delivery: {force: true}\n", "delivery.force: unknown key", id="delivery-key"),
    pytest.param("!!python/object:os.system {}\n", "line 1", id="unsafe-tag"),
    pytest.param(
        "setup: [" + ", ".join(["make"] * 33) + "]\n", "setup: List should have at most 32",
        id="too-many-setup",
    ),
    pytest.param("checks: {test: '" + "x" * 5000 + "'}\n", "checks.test", id="long-command"),
    pytest.param("checks: {t: " + "x" * 70_000 + "}\n", "at most 65536", id="huge-file"),
]  # fmt: skip


@pytest.mark.parametrize(("content", "reason"), MALFORMED)
def test_a_malformed_file_is_refused_with_its_reason(
    tmp_path: Path, content: str, reason: str
) -> None:
    root = project(tmp_path, {".devteam.yaml": content})
    with pytest.raises(InvalidProjectConfig) as raised:
        load_project_checks(root)
    assert raised.value.code == ErrorCode.INVALID_PROJECT_CONFIG == "invalid_project_config"
    assert raised.value.message.startswith(".devteam.yaml: ")
    assert reason in raised.value.message


def test_a_symlink_leading_out_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.yaml"
    outside.write_text("checks: {test: pytest}\n")
    root = tmp_path / "project"
    root.mkdir()
    (root / ".devteam.yaml").symlink_to(outside)
    with pytest.raises(InvalidProjectConfig, match="symlink leading out"):
        load_project_checks(root)


# -- detection -------------------------------------------------------------------------

DETECTED = [
    pytest.param(
        {"pyproject.toml": "[tool.pytest.ini_options]\naddopts = '-q'\n"},
        {"test": "python3 -m pytest"}, ["pyproject.toml"], id="pytest-configured",
    ),
    pytest.param(
        {"pyproject.toml": "[project]\nname='x'\n[project.optional-dependencies]\n"
                           "test = ['pytest>=8']\n"},
        {"test": "python3 -m pytest"}, ["pyproject.toml"], id="pytest-dependency",
    ),
    pytest.param(
        {"pyproject.toml": "[dependency-groups]\ndev = ['pytest']\n"},
        {"test": "python3 -m pytest"}, ["pyproject.toml"], id="pytest-dependency-group",
    ),
    pytest.param(
        {"tests/test_app.py": "def test(): pass\n"},
        {"test": "python3 -m pytest"}, ["tests/"], id="tests-folder",
    ),
    pytest.param(
        {"tests/test_app.py": "", ".venv/bin/python": ""},
        {"test": ".venv/bin/python -m pytest"}, ["tests/"], id="project-venv",
    ),
    pytest.param(
        {"package.json": json.dumps({"scripts": {"test": "vitest run", "lint": "eslint ."}})},
        {"test": "npm test", "lint": "npm run lint"}, ["package.json"], id="npm",
    ),
    pytest.param(
        {"package.json": json.dumps(
            {"scripts": {"test": 'echo "Error: no test specified" && exit 1'}}
        )},
        {}, [], id="npm-init-placeholder",
    ),
    pytest.param(
        {"go.mod": "module example.com/x\n"},
        {"test": "go test ./...", "vet": "go vet ./..."}, ["go.mod"], id="go",
    ),
    pytest.param(
        {"Cargo.toml": "[package]\nname = 'x'\n"}, {"test": "cargo test"}, ["Cargo.toml"],
        id="cargo",
    ),
    pytest.param(
        {"tests/test_x.py": "", "package.json": json.dumps({"scripts": {"test": "jest"}})},
        {"test": "python3 -m pytest", "npm-test": "npm test"}, ["tests/", "package.json"],
        id="python-and-npm",
    ),
    pytest.param({"README.md": "# hi\n"}, {}, [], id="nothing"),
    pytest.param({"pyproject.toml": "[project\n"}, {}, [], id="broken-pyproject"),
    pytest.param({"package.json": "{not json"}, {}, [], id="broken-package-json"),
    pytest.param({"tests/data.txt": "x"}, {}, [], id="tests-without-python"),
]  # fmt: skip


@pytest.mark.parametrize(("files", "checks", "sources"), DETECTED)
def test_checks_are_detected_without_the_file(
    tmp_path: Path, files: dict[str, str], checks: dict[str, str], sources: list[str]
) -> None:
    found = load_project_checks(project(tmp_path, files))
    assert (found.checks, found.detected_from) == (checks, sources)
    assert found.source == ("detected" if checks else "none")
    assert found.setup == [] and found.delivery is None
    assert found.verifiable == bool(checks)
