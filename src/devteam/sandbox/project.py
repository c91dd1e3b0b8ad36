"""How a project is set up and checked: its `.devteam.yaml`, else what its files suggest.

```yaml
setup: ["python3 -m venv .venv", ".venv/bin/pip install -e .[test]"]
checks: {test: "python3 -m unittest discover -s tests", lint: "ruff check ."}
delivery: {push: true, remote: origin}
```

The file is read strictly: unknown keys, empty commands, odd check names and
oversized lists are refused with `invalid_project_config`, naming the key. Without
the file, checks are detected from the project's own files (pytest, npm scripts,
Go, Cargo), and `source` says which way they came; a project with neither has no
checks (`source: "none"`), and nothing about it can be verified.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from devteam.domain.errors import InvalidProjectConfig

PROJECT_FILE = ".devteam.yaml"
MAX_FILE_BYTES = 64 * 1024
MAX_COMMANDS = 32
MAX_COMMAND_CHARS = 4096
NPM_DEFAULT_TEST = 'echo "Error: no test specified" && exit 1'
"""The `test` script `npm init` writes: not a check."""


def _command(value: str) -> str:
    if not value.strip():
        raise ValueError("a command cannot be blank")
    if "\x00" in value:
        raise ValueError("a command cannot contain NUL characters")
    return value


Command = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=MAX_COMMAND_CHARS),
    AfterValidator(_command),
]
CheckName = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
Source = Literal["file", "detected", "none"]


class DeliveryConfig(BaseModel):
    """Where a verified, approved change goes."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    push: bool = False
    """Push the change's branch to `remote`."""
    remote: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = "origin"
    pull_request: bool = False
    """Open a pull request for the pushed branch (where the remote's host allows it)."""
    base_branch: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_./-]{1,200}$")] | None = (
        None
    )
    """The branch the pull request targets; None: the repository's default."""


class ProjectFile(BaseModel):
    """`.devteam.yaml` as written; every key is optional, none other is allowed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    setup: Annotated[list[Command], Field(max_length=MAX_COMMANDS)] = Field(default_factory=list)
    checks: Annotated[dict[CheckName, Command], Field(max_length=MAX_COMMANDS)] = Field(
        default_factory=dict
    )
    delivery: DeliveryConfig | None = None


class ProjectChecks(BaseModel):
    model_config = ConfigDict(frozen=True)

    setup: list[str]
    """Shell commands run once, in order, before the checks (the network only when
    `sandbox.setup_network` is on)."""
    checks: dict[str, str]
    """Check name -> shell command; a check passes when its command exits 0."""
    delivery: DeliveryConfig | None
    """From `.devteam.yaml` only; None: the change is not delivered anywhere."""
    source: Source
    """`file`: from `.devteam.yaml`; `detected`: from the project's files; `none`: neither."""
    detected_from: list[str]
    """The files the checks came from (`.devteam.yaml`, or those detection read)."""

    @property
    def verifiable(self) -> bool:
        """Whether there is any check at all; without one, nothing is verified."""
        return bool(self.checks)


def load_project_checks(root: Path) -> ProjectChecks:
    """The project's setup and checks: `.devteam.yaml` when present, else detected.

    Raises `InvalidProjectConfig` when `.devteam.yaml` exists but is malformed.
    """
    path = root / PROJECT_FILE
    if path.is_file() or path.is_symlink():
        declared = _read_project_file(path)
        return ProjectChecks(
            setup=list(declared.setup),
            checks=dict(declared.checks),
            delivery=declared.delivery,
            source="file",
            detected_from=[PROJECT_FILE],
        )
    checks, sources = _detect(root)
    return ProjectChecks(
        setup=[],
        checks=checks,
        delivery=None,
        source="detected" if checks else "none",
        detected_from=sources,
    )


def _read_project_file(path: Path) -> ProjectFile:
    if not path.resolve().is_relative_to(path.parent.resolve()):
        raise InvalidProjectConfig(f"{PROJECT_FILE}: a symlink leading out of the project")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidProjectConfig(f"{PROJECT_FILE}: cannot read: {exc.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise InvalidProjectConfig(
            f"{PROJECT_FILE}: {len(raw)} bytes; the file may have at most {MAX_FILE_BYTES}"
        )
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidProjectConfig(f"{PROJECT_FILE}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InvalidProjectConfig(f"{PROJECT_FILE}: {where}{problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidProjectConfig(f"{PROJECT_FILE}: the top level must be a mapping")
    try:
        return ProjectFile.model_validate(data)
    except ValidationError as exc:
        raise InvalidProjectConfig(
            f"{PROJECT_FILE}: {_problems(exc)}",
            details=[
                {"loc": [str(p) for p in e["loc"]], "msg": e["msg"]}
                for e in exc.errors(include_url=False)
            ],
        ) from None


def _problems(exc: ValidationError) -> str:
    parts: list[str] = []
    for error in exc.errors(include_url=False):
        loc = [str(p) for p in error["loc"]]
        if loc[-1:] == ["[key]"] and loc[:1] == ["checks"]:
            parts.append(
                f"checks: {loc[-2]!r} is not a valid check name (letters, digits, "
                "'_', '.' and '-', at most 64)"
            )
            continue
        location = ".".join(loc) or "(root)"
        if error["type"] == "extra_forbidden":
            parts.append(f"{location}: unknown key")
        else:
            parts.append(f"{location}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


# -- detection --------------------------------------------------------------------


def _detect(root: Path) -> tuple[dict[str, str], list[str]]:
    checks: dict[str, str] = {}
    sources: list[str] = []
    detectors = (("python", _python), ("npm", _node), ("go", _go), ("cargo", _cargo))
    for prefix, detector in detectors:
        found, source = detector(root)
        if not found:
            continue
        sources.append(source)
        # Two ecosystems in one project: the second one's `test` becomes `npm-test`, …
        for name, command in found.items():
            checks[name if name not in checks else f"{prefix}-{name}"] = command
    return checks, sources


def _python(root: Path) -> tuple[dict[str, str], str]:
    python = ".venv/bin/python" if (root / ".venv" / "bin" / "python").exists() else "python3"
    command = {"test": f"{python} -m pytest"}
    pyproject = _toml(root / "pyproject.toml")
    if pyproject is not None and _uses_pytest(pyproject):
        return command, "pyproject.toml"
    if (root / "pytest.ini").is_file():
        return command, "pytest.ini"
    tests = root / "tests"
    if tests.is_dir() and any(tests.rglob("*.py")):
        return command, "tests/"
    return {}, ""


def _uses_pytest(pyproject: dict[str, Any]) -> bool:
    tool = pyproject.get("tool")
    if isinstance(tool, dict) and isinstance(tool.get("pytest"), dict):
        return True
    project = pyproject.get("project")
    requirements: list[Any] = []
    if isinstance(project, dict):
        optional = project.get("optional-dependencies")
        if isinstance(optional, dict):
            for group in optional.values():
                requirements += group if isinstance(group, list) else []
    groups = pyproject.get("dependency-groups")
    if isinstance(groups, dict):
        for group in groups.values():
            requirements += group if isinstance(group, list) else []
    return any(isinstance(r, str) and r.strip().lower().startswith("pytest") for r in requirements)


def _node(root: Path) -> tuple[dict[str, str], str]:
    try:
        package = json.loads((root / "package.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}, ""
    scripts = package.get("scripts") if isinstance(package, dict) else None
    if not isinstance(scripts, dict):
        return {}, ""
    checks: dict[str, str] = {}
    test = scripts.get("test")
    if isinstance(test, str) and test.strip() and test.strip() != NPM_DEFAULT_TEST:
        checks["test"] = "npm test"
    if isinstance(scripts.get("lint"), str) and scripts["lint"].strip():
        checks["lint"] = "npm run lint"
    return checks, "package.json"


def _go(root: Path) -> tuple[dict[str, str], str]:
    if not (root / "go.mod").is_file():
        return {}, ""
    return {"test": "go test ./...", "vet": "go vet ./..."}, "go.mod"


def _cargo(root: Path) -> tuple[dict[str, str], str]:
    if not (root / "Cargo.toml").is_file():
        return {}, ""
    return {"test": "cargo test"}, "Cargo.toml"


def _toml(path: Path) -> dict[str, Any] | None:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError):
        return None
