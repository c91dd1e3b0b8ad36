"""What the structural scan reads from manifests, listings, searches and `.gitignore`."""

from __future__ import annotations

import json

import pytest

from devteam.agents.manifests import (
    ManifestFacts,
    config_file_convention,
    is_test_path,
    language_of,
    read_manifest,
    split_requirement,
)
from devteam.agents.structure import (
    GitIgnore,
    count_lines,
    keywords,
    matched_paths,
    parse_tree,
    source_dirs,
)

PYPROJECT = """
[project]
name = "svc"
dependencies = ["fastapi>=0.115", "httpx[http2] ~= 0.28 ; python_version >= '3.11'"]
optional-dependencies = {postgres = ["asyncpg>=0.30"]}
scripts = {svc = "svc.cli:main"}

[dependency-groups]
dev = ["pytest>=8", "ruff"]

[build-system]
requires = ["hatchling"]

[tool.ruff]
line-length = 99
[tool.ruff.lint]
select = ["E", "F"]
[tool.ruff.format]
quote-style = "double"

[tool.mypy]
strict = true

[tool.pytest.ini_options]
testpaths = ["tests"]
"""


def test_pyproject_gives_dependencies_entry_points_and_tools() -> None:
    facts = ManifestFacts()
    read_manifest("pyproject.toml", PYPROJECT, "pyproject.toml", facts)
    assert [(d.name, d.spec, d.scope) for d in facts.dependencies] == [
        ("fastapi", ">=0.115", "runtime"),
        ("httpx", "[http2] ~= 0.28 ; python_version >= '3.11'", "runtime"),
        ("asyncpg", ">=0.30", "optional"),
        ("pytest", ">=8", "dev"),
        ("ruff", "", "dev"),
        ("hatchling", "", "build"),
    ]
    assert [(e.name, e.kind, e.target) for e in facts.entry_points] == [
        ("svc", "console_script", "svc.cli:main")
    ]
    assert [(c.tool, c.kind, c.notes) for c in facts.conventions] == [
        ("ruff", "linter", "line length 99; rules E,F"),
        ("mypy", "type_checker", "strict"),
        ("ruff format", "formatter", ""),
    ]
    assert facts.test_frameworks == ["pytest"]
    assert facts.test_config_files == ["pyproject.toml"]


def test_package_json_gives_node_facts() -> None:
    package = {
        "name": "web",
        "main": "dist/index.js",
        "bin": {"web": "bin/web.js"},
        "scripts": {"dev": "vite", "test": "vitest"},
        "dependencies": {"react": "^18.3.0"},
        "devDependencies": {"vitest": "^2.0.0", "eslint": "^9", "typescript": "^5.5"},
        "prettier": {"semi": False},
    }
    facts = ManifestFacts()
    read_manifest("package.json", json.dumps(package), "web/package.json", facts)
    assert {(d.name, d.scope, d.ecosystem) for d in facts.dependencies} == {
        ("react", "runtime", "node"),
        ("vitest", "dev", "node"),
        ("eslint", "dev", "node"),
        ("typescript", "dev", "node"),
    }
    assert [(e.name, e.kind, e.target) for e in facts.entry_points] == [
        ("web", "bin", "bin/web.js"),
        ("main", "main", "dist/index.js"),
        ("npm run dev", "script", "vite"),
    ]
    assert facts.test_frameworks == ["vitest"]
    assert {(c.tool, c.kind) for c in facts.conventions} == {
        ("eslint", "linter"),
        ("tsc", "type_checker"),
        ("prettier", "formatter"),
    }


def test_go_cargo_setup_cfg_and_requirements() -> None:
    facts = ManifestFacts()
    go_mod = (
        "module example.com/svc\n\ngo 1.22\n\nrequire (\n\tgithub.com/go-chi/chi/v5 v5.0.12\n"
        "\tgolang.org/x/text v0.14.0 // indirect\n)\nrequire github.com/google/uuid v1.6.0\n"
    )
    read_manifest("go.mod", go_mod, "go.mod", facts)
    cargo = '[package]\nname = "cli"\n[dependencies]\nserde = { version = "1" }\n'
    cargo += '[[bin]]\nname = "cli"\npath = "src/bin/cli.rs"\n'
    read_manifest("Cargo.toml", cargo, "Cargo.toml", facts)
    setup_cfg = (
        "[options]\ninstall_requires =\n    requests>=2\n"
        "[options.entry_points]\nconsole_scripts =\n    tool = tool.main:run\n[flake8]\n"
    )
    read_manifest("setup.cfg", setup_cfg, "setup.cfg", facts)
    read_manifest("requirements-dev.txt", "-r base.txt\nblack==24.1  # fmt\n", "r.txt", facts)
    assert [(d.name, d.spec, d.scope, d.ecosystem) for d in facts.dependencies] == [
        ("github.com/go-chi/chi/v5", "v5.0.12", "runtime", "go"),
        ("golang.org/x/text", "v0.14.0", "optional", "go"),
        ("github.com/google/uuid", "v1.6.0", "runtime", "go"),
        ("serde", "1", "runtime", "rust"),
        ("requests", ">=2", "runtime", "python"),
        ("black", "==24.1", "runtime", "python"),
    ]
    assert [(e.name, e.target) for e in facts.entry_points] == [
        ("cli", "src/bin/cli.rs"),
        ("tool", "tool.main:run"),
    ]
    assert facts.test_frameworks == ["go test", "cargo test"]
    assert [c.tool for c in facts.conventions] == ["flake8"]


def test_a_broken_manifest_is_reported_not_fatal() -> None:
    facts = ManifestFacts()
    read_manifest("pyproject.toml", "[project\nname=", "pyproject.toml", facts)
    read_manifest("package.json", "{not json", "package.json", facts)
    assert len(facts.problems) == 2
    assert facts.problems[0].startswith("pyproject.toml is not valid TOML")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("django>=5 # web", ("django", ">=5")),
        ("  -e .", None),
        ("git+https://example.com/x.git", None),
        ("# comment", None),
        ("zope.interface", ("zope.interface", "")),
    ],
)
def test_requirement_lines(text: str, expected: tuple[str, str] | None) -> None:
    assert split_requirement(text) == expected


@pytest.mark.parametrize(
    ("path", "is_test"),
    [
        ("tests/unit/test_app.py", True),
        ("tests/conftest.py", True),
        ("tests/README.md", False),
        ("src/app_test.py", True),
        ("web/src/Button.test.tsx", True),
        ("web/src/Button.tsx", False),
        ("pkg/server_test.go", True),
        ("src/testing.py", False),
    ],
)
def test_test_paths(path: str, is_test: bool) -> None:
    assert is_test_path(path) is is_test


def test_languages_and_config_files() -> None:
    assert language_of("src/app.py") == "Python"
    assert language_of("docker/Dockerfile") == "Dockerfile"
    assert language_of("notes.unknown") is None
    assert config_file_convention(".pre-commit-config.yaml") == ("pre-commit", "hooks")
    assert config_file_convention("eslint.config.mjs") == ("eslint", "linter")
    assert config_file_convention("README.md") is None


def test_gitignore_patterns() -> None:
    ignore = GitIgnore("# build\n/dist/\n*.db\nnode_modules/\n!keep.db\ndocs/_build\n")
    assert ignore.ignores("dist/app.js")
    assert not ignore.ignores("src/dist.py")
    assert ignore.ignores("data/app.db")
    assert ignore.ignores("web/node_modules/react/index.js")
    assert ignore.ignores("docs/_build/index.html")
    assert not ignore.ignores("src/app.py")


def test_listings_searches_and_line_counts() -> None:
    listing = parse_tree("src/\nsrc/app.py\nlink (symlink)\n[more entries not shown: …]")
    assert (listing.files, listing.dirs, listing.truncated) == (["src/app.py"], ["src"], True)
    assert count_lines("a\nb\n") == 2
    assert count_lines("a\nb") == 2
    assert count_lines("[empty.py has 0 lines: nothing from line 1]") == 0
    assert count_lines("x\n\n[truncated after line 6000 (262144 bytes): read on]") == 6000
    found = matched_paths("src/a.py:3: x\nsrc/a.py:9: y\nREADME.md:1: z\n[no matches]")
    assert found == {"src/a.py": 2, "README.md": 1}


def test_keywords_of_a_task() -> None:
    words = keywords(
        "Add a /version endpoint to the OrderService, and update the order_items table"
    )
    assert words[:3] == ["OrderService", "order_items", "/version"]
    assert "endpoint" in words and "the" not in words and "Add" not in words


def test_source_dirs() -> None:
    files = [
        "src/shop/__init__.py",
        "src/shop/api/__init__.py",
        "tests/__init__.py",
        "web/src/main.ts",
        "docs/index.md",
    ]
    assert source_dirs(files) == ["src/shop", "web"]
