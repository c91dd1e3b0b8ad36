"""What a project's manifests and config files say: entry points, dependencies, tools.

Pure functions over file contents, so the codebase analyzer's structural scan
reads files through the workspace tools and hands the text here: Python
(`pyproject.toml`, `setup.cfg`, `requirements*.txt`), Node (`package.json`),
Go (`go.mod`) and Rust (`Cargo.toml`).
"""

from __future__ import annotations

import configparser
import json
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from devteam.agents.models import (
    Convention,
    ConventionKind,
    Dependency,
    Ecosystem,
    EntryKind,
    EntryPoint,
    Scope,
)

LANGUAGES: dict[str, str] = {
    ".py": "Python",
    ".pyi": "Python",
    ".js": "JavaScript",
    ".mjs": "JavaScript",
    ".cjs": "JavaScript",
    ".jsx": "JavaScript",
    ".ts": "TypeScript",
    ".tsx": "TypeScript",
    ".vue": "Vue",
    ".svelte": "Svelte",
    ".go": "Go",
    ".rs": "Rust",
    ".java": "Java",
    ".kt": "Kotlin",
    ".rb": "Ruby",
    ".php": "PHP",
    ".cs": "C#",
    ".c": "C",
    ".h": "C",
    ".cpp": "C++",
    ".hpp": "C++",
    ".swift": "Swift",
    ".sh": "Shell",
    ".sql": "SQL",
    ".html": "HTML",
    ".css": "CSS",
    ".scss": "CSS",
    ".md": "Markdown",
    ".rst": "reStructuredText",
    ".yaml": "YAML",
    ".yml": "YAML",
    ".toml": "TOML",
    ".json": "JSON",
    ".mako": "Mako",
}
DOCS_AND_DATA = frozenset({"Markdown", "reStructuredText", "YAML", "TOML", "JSON"})
"""Languages that are not code: counted, but not what makes a project "a Python project"."""

TEST_DIR_NAMES = frozenset({"tests", "test", "__tests__", "spec", "specs", "e2e"})
TEST_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("test_*.py", re.compile(r"(^|/)test_[^/]*\.py$")),
    ("*_test.py", re.compile(r"(^|/)[^/]*_test\.py$")),
    ("*.test.js/ts", re.compile(r"\.test\.[cm]?[jt]sx?$")),
    ("*.spec.js/ts", re.compile(r"\.spec\.[cm]?[jt]sx?$")),
    ("*_test.go", re.compile(r"_test\.go$")),
    ("tests/*.rs", re.compile(r"(^|/)tests/[^/]*\.rs$")),
]
LOCKFILES = frozenset(
    {
        "uv.lock",
        "poetry.lock",
        "Pipfile.lock",
        "pdm.lock",
        "package-lock.json",
        "yarn.lock",
        "pnpm-lock.yaml",
        "bun.lockb",
        "Cargo.lock",
        "go.sum",
    }
)
MANIFESTS = ("pyproject.toml", "setup.cfg", "package.json", "go.mod", "Cargo.toml")
REQUIREMENTS = re.compile(r"^requirements([-_.][\w.-]*)?\.txt$")

# Config files by name (at the root), and what they configure.
CONFIG_FILES: list[tuple[re.Pattern[str], str, ConventionKind]] = [
    (re.compile(r"^\.?ruff\.toml$"), "ruff", "linter"),
    (re.compile(r"^mypy\.ini$|^\.mypy\.ini$"), "mypy", "type_checker"),
    (re.compile(r"^\.flake8$"), "flake8", "linter"),
    (re.compile(r"^\.pylintrc$|^pylintrc$"), "pylint", "linter"),
    (re.compile(r"^pyrightconfig\.json$"), "pyright", "type_checker"),
    (re.compile(r"^\.isort\.cfg$"), "isort", "formatter"),
    (re.compile(r"^\.eslintrc(\.\w+)?$|^eslint\.config\.[cm]?[jt]s$"), "eslint", "linter"),
    (re.compile(r"^\.prettierrc(\.\w+)?$|^prettier\.config\.[cm]?js$"), "prettier", "formatter"),
    (re.compile(r"^biome\.jsonc?$"), "biome", "linter"),
    (re.compile(r"^tsconfig\.json$"), "tsc", "type_checker"),
    (re.compile(r"^\.golangci\.ya?ml$"), "golangci-lint", "linter"),
    (re.compile(r"^rustfmt\.toml$|^\.rustfmt\.toml$"), "rustfmt", "formatter"),
    (re.compile(r"^clippy\.toml$"), "clippy", "linter"),
    (re.compile(r"^\.pre-commit-config\.ya?ml$"), "pre-commit", "hooks"),
    (re.compile(r"^\.editorconfig$"), "editorconfig", "editor"),
    (re.compile(r"^\.stylelintrc(\.\w+)?$"), "stylelint", "linter"),
]
PYPROJECT_TOOLS: dict[str, ConventionKind] = {
    "ruff": "linter",
    "black": "formatter",
    "isort": "formatter",
    "mypy": "type_checker",
    "pyright": "type_checker",
    "pylint": "linter",
    "flake8": "linter",
}
NODE_TEST_FRAMEWORKS = {
    "jest": "jest",
    "vitest": "vitest",
    "mocha": "mocha",
    "ava": "ava",
    "@playwright/test": "playwright",
    "cypress": "cypress",
}
NODE_TOOLS: dict[str, tuple[str, ConventionKind]] = {
    "eslint": ("eslint", "linter"),
    "prettier": ("prettier", "formatter"),
    "typescript": ("tsc", "type_checker"),
    "@biomejs/biome": ("biome", "linter"),
}


@dataclass
class ManifestFacts:
    """What the manifests of one project say."""

    entry_points: list[EntryPoint] = field(default_factory=list)
    dependencies: list[Dependency] = field(default_factory=list)
    conventions: list[Convention] = field(default_factory=list)
    test_frameworks: list[str] = field(default_factory=list)
    test_config_files: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Manifests that could not be read (a risk worth reporting)."""

    def add_dependency(
        self, name: str, spec: str, ecosystem: Ecosystem, scope: Scope, defined_in: str
    ) -> None:
        dependency = Dependency(
            name=name, spec=spec, ecosystem=ecosystem, scope=scope, defined_in=defined_in
        )
        self.dependencies.append(dependency)

    def add_entry_point(self, name: str, kind: EntryKind, target: str, defined_in: str) -> None:
        self.entry_points.append(
            EntryPoint(name=name, kind=kind, target=target, defined_in=defined_in)
        )

    def add_framework(self, name: str, config_file: str | None = None) -> None:
        if name not in self.test_frameworks:
            self.test_frameworks.append(name)
        if config_file and config_file not in self.test_config_files:
            self.test_config_files.append(config_file)

    def add_convention(
        self, tool: str, kind: ConventionKind, config_file: str, notes: str = ""
    ) -> None:
        for known in self.conventions:
            if known.tool == tool and known.config_file == config_file:
                return
        self.conventions.append(
            Convention(tool=tool, kind=kind, config_file=config_file, notes=notes)
        )


def language_of(path: str) -> str | None:
    name = PurePosixPath(path).name
    if name == "Dockerfile" or name.startswith("Dockerfile."):
        return "Dockerfile"
    if name in ("Makefile", "GNUmakefile"):
        return "Makefile"
    return LANGUAGES.get(PurePosixPath(path).suffix.lower())


def is_test_path(path: str) -> bool:
    parts = PurePosixPath(path).parts
    if any(part in TEST_DIR_NAMES for part in parts[:-1]):
        return language_of(path) not in (None, *DOCS_AND_DATA)
    return any(pattern.search(path) for _, pattern in TEST_PATTERNS)


def test_patterns_used(paths: Iterable[str]) -> list[str]:
    paths = list(paths)
    return [name for name, pattern in TEST_PATTERNS if any(pattern.search(p) for p in paths)]


_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*(.*)$")


def split_requirement(text: str) -> tuple[str, str] | None:
    """`name`, `spec` of a PEP 508 requirement (None for options and URLs)."""
    text = text.split("#", 1)[0].strip()
    if not text or text.startswith(("-", "git+", "http:", "https:", "file:")):
        return None
    match = _REQUIREMENT_NAME.match(text)
    if match is None:
        return None
    name, extras, rest = match.groups()
    return name, " ".join(part for part in (extras, rest.strip()) if part)


def read_pyproject(text: str, path: str, facts: ManifestFacts) -> None:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        facts.problems.append(f"{path} is not valid TOML: {exc}")
        return
    _pyproject_dependencies(data, path, facts)
    _pyproject_entry_points(data, path, facts)
    tool = data.get("tool", {})
    for name, kind in PYPROJECT_TOOLS.items():
        if name in tool:
            facts.add_convention(name, kind, path, _tool_notes(name, tool[name]))
    if "ruff" in tool and "format" in tool["ruff"]:
        facts.add_convention("ruff format", "formatter", path)
    if "pytest" in tool:
        facts.add_framework("pytest", path)
    if any(d.name.lower() == "pytest" for d in facts.dependencies):
        facts.add_framework("pytest")


def _pyproject_dependencies(data: dict[str, Any], path: str, facts: ManifestFacts) -> None:
    def requirements(items: Iterable[Any], scope: Scope) -> None:
        for item in items:
            if isinstance(item, str) and (parsed := split_requirement(item)):
                facts.add_dependency(parsed[0], parsed[1], "python", scope, path)

    project = data.get("project", {})
    requirements(project.get("dependencies", []), "runtime")
    for group in project.get("optional-dependencies", {}).values():
        requirements(group, "optional")
    for group in data.get("dependency-groups", {}).values():
        requirements(group, "dev")
    requirements(data.get("build-system", {}).get("requires", []), "build")
    poetry = data.get("tool", {}).get("poetry", {})
    for name, spec in poetry.get("dependencies", {}).items():
        if name != "python":
            facts.add_dependency(name, _spec(spec), "python", "runtime", path)


def _pyproject_entry_points(data: dict[str, Any], path: str, facts: ManifestFacts) -> None:
    project = data.get("project", {})
    for name, target in project.get("scripts", {}).items():
        facts.add_entry_point(name, "console_script", str(target), path)
    for name, target in project.get("gui-scripts", {}).items():
        facts.add_entry_point(name, "gui_script", str(target), path)
    for name, target in data.get("tool", {}).get("poetry", {}).get("scripts", {}).items():
        facts.add_entry_point(name, "console_script", _spec(target), path)


def _spec(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("version", ""))
    return str(value)


def _tool_notes(name: str, section: Any) -> str:
    if not isinstance(section, dict):
        return ""
    notes = []
    if name == "ruff":
        if "line-length" in section:
            notes.append(f"line length {section['line-length']}")
        lint = section.get("lint", section)
        if isinstance(lint, dict) and "select" in lint:
            notes.append("rules " + ",".join(str(s) for s in lint["select"]))
    if name == "mypy" and section.get("strict"):
        notes.append("strict")
    if name == "black" and "line-length" in section:
        notes.append(f"line length {section['line-length']}")
    return "; ".join(notes)


def read_setup_cfg(text: str, path: str, facts: ManifestFacts) -> None:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        facts.problems.append(f"{path} could not be parsed: {exc.message}")
        return
    if parser.has_option("options", "install_requires"):
        for line in parser.get("options", "install_requires").splitlines():
            if parsed := split_requirement(line):
                facts.add_dependency(parsed[0], parsed[1], "python", "runtime", path)
    if parser.has_option("options.entry_points", "console_scripts"):
        for line in parser.get("options.entry_points", "console_scripts").splitlines():
            if "=" in line:
                name, target = (s.strip() for s in line.split("=", 1))
                facts.add_entry_point(name, "console_script", target, path)
    sections: list[tuple[str, str, ConventionKind]] = [
        ("flake8", "flake8", "linter"),
        ("mypy", "mypy", "type_checker"),
        ("isort", "isort", "formatter"),
    ]
    for section, tool, kind in sections:
        if parser.has_section(section):
            facts.add_convention(tool, kind, path)
    if parser.has_section("tool:pytest"):
        facts.add_framework("pytest", path)


def read_requirements(text: str, path: str, facts: ManifestFacts) -> None:
    dev = re.search(r"dev|test|lint", PurePosixPath(path).name)
    scope: Scope = "dev" if dev else "runtime"
    for line in text.splitlines():
        if parsed := split_requirement(line):
            facts.add_dependency(parsed[0], parsed[1], "python", scope, path)


def read_package_json(text: str, path: str, facts: ManifestFacts) -> None:
    try:
        data = json.loads(text)
    except ValueError as exc:
        facts.problems.append(f"{path} is not valid JSON: {exc}")
        return
    if not isinstance(data, dict):
        return
    scopes: list[tuple[str, Scope]] = [
        ("dependencies", "runtime"),
        ("devDependencies", "dev"),
        ("optionalDependencies", "optional"),
        ("peerDependencies", "optional"),
    ]
    for section, scope in scopes:
        for name, spec in (data.get(section) or {}).items():
            facts.add_dependency(name, str(spec), "node", scope, path)
    _package_entry_points(data, path, facts)
    names = {d.name for d in facts.dependencies if d.ecosystem == "node"}
    for package, framework in NODE_TEST_FRAMEWORKS.items():
        if package in names:
            facts.add_framework(framework)
    for package, (tool, kind) in NODE_TOOLS.items():
        if package in names:
            facts.add_convention(tool, kind, path)
    if "eslintConfig" in data:
        facts.add_convention("eslint", "linter", path)
    if "prettier" in data:
        facts.add_convention("prettier", "formatter", path)


def _package_entry_points(data: dict[str, Any], path: str, facts: ManifestFacts) -> None:
    bins = data.get("bin")
    if isinstance(bins, str):
        bins = {data.get("name", "bin"): bins}
    for name, target in (bins or {}).items():
        facts.add_entry_point(name, "bin", str(target), path)
    if isinstance(main := data.get("main"), str):
        facts.add_entry_point("main", "main", main, path)
    for script in ("start", "dev", "serve"):
        if isinstance(command := (data.get("scripts") or {}).get(script), str):
            facts.add_entry_point(f"npm run {script}", "script", command, path)


_GO_REQUIRE = re.compile(r"^\s*([\w./~-]+)\s+(v[\w.+-]+)")


def read_go_mod(text: str, path: str, facts: ManifestFacts) -> None:
    in_block = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("require ("):
            in_block = True
            continue
        if in_block and stripped == ")":
            in_block = False
            continue
        candidate = stripped.removeprefix("require ") if not in_block else stripped
        if (in_block or stripped.startswith("require ")) and (m := _GO_REQUIRE.match(candidate)):
            scope: Scope = "optional" if "// indirect" in stripped else "runtime"
            facts.add_dependency(m.group(1), m.group(2), "go", scope, path)
    facts.add_framework("go test")


def read_cargo_toml(text: str, path: str, facts: ManifestFacts) -> None:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        facts.problems.append(f"{path} is not valid TOML: {exc}")
        return
    scopes: list[tuple[str, Scope]] = [
        ("dependencies", "runtime"),
        ("dev-dependencies", "dev"),
        ("build-dependencies", "build"),
    ]
    for section, scope in scopes:
        for name, spec in data.get(section, {}).items():
            facts.add_dependency(name, _spec(spec), "rust", scope, path)
    for binary in data.get("bin", []):
        if isinstance(binary, dict) and "name" in binary:
            target = str(binary.get("path", "src/main.rs"))
            facts.add_entry_point(str(binary["name"]), "bin", target, path)
    facts.add_framework("cargo test")


READERS = {
    "pyproject.toml": read_pyproject,
    "setup.cfg": read_setup_cfg,
    "package.json": read_package_json,
    "go.mod": read_go_mod,
    "Cargo.toml": read_cargo_toml,
}


def read_manifest(name: str, text: str, path: str, facts: ManifestFacts) -> None:
    if (reader := READERS.get(name)) is not None:
        reader(text, path, facts)
    elif REQUIREMENTS.match(name):
        read_requirements(text, path, facts)


def config_file_convention(name: str) -> tuple[str, ConventionKind] | None:
    """`(tool, kind)` of a config file by its name, or None."""
    for pattern, tool, kind in CONFIG_FILES:
        if pattern.match(name):
            return tool, kind
    return None
