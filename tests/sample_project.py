"""A small project for agents to work on: a WSGI web app with a page and tests, in git.

`make_project(workspaces_root / "shop")` creates it as a git repository with one
commit on `main`; the edits the scripted coders make (`VERSION_ROUTE_PATCH`,
`VERSION_TEST`, `VERSION_PAGE_SCRIPT`, `VERSION_PAGE_PATCH`) apply to it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

FILES = {
    "pyproject.toml": """\
[project]
name = "shop"
version = "0.3.0"
requires-python = ">=3.11"
dependencies = ["gunicorn>=22"]

[project.scripts]
shop = "app.main:serve"

[dependency-groups]
dev = ["pytest>=8"]

[tool.pytest.ini_options]
testpaths = ["tests"]

[tool.ruff]
line-length = 100
""",
    "app/__init__.py": '"""The shop web app."""\n',
    "app/main.py": '''\
"""HTTP routes of the shop, as a WSGI application."""

import json

ROUTES = {}


def route(path):
    def register(handler):
        ROUTES[path] = handler
        return handler

    return register


@route("/health")
def health():
    return 200, {"status": "ok"}


def application(environ, start_response):
    handler = ROUTES.get(environ.get("PATH_INFO", "/"))
    status, body = handler() if handler else (404, {"error": "not found"})
    start_response(f"{status} OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


def serve():
    from wsgiref.simple_server import make_server

    make_server("127.0.0.1", 8080, application).serve_forever()
''',
    "tests/__init__.py": "",
    "tests/test_health.py": """\
from app.main import application


def call(path):
    seen = {}
    body = application({"PATH_INFO": path}, lambda status, headers: seen.update(status=status))
    return seen["status"], b"".join(body)


def test_health_answers_ok():
    assert call("/health") == ("200 OK", b'{"status": "ok"}')
""",
    "static/index.html": """\
<!doctype html>
<html lang="en">
  <head><title>Shop</title></head>
  <body>
    <main id="app"></main>
    <script src="app.js"></script>
  </body>
</html>
""",
    "static/app.js": """\
export async function health() {
  const response = await fetch("/health");
  return response.json();
}
""",
    ".gitignore": "__pycache__/\n*.pyc\n",
}

VERSION_ROUTE_PATCH = "\n".join(
    [
        "--- a/app/main.py",
        "+++ b/app/main.py",
        "@@ -18,6 +18,11 @@",
        '     return 200, {"status": "ok"}',
        " ",
        " ",
        '+@route("/version")',
        "+def version():",
        '+    return 200, {"version": "0.3.0"}',
        "+",
        "+",
        " def application(environ, start_response):",
        '     handler = ROUTES.get(environ.get("PATH_INFO", "/"))',
        '     status, body = handler() if handler else (404, {"error": "not found"})',
        "",
    ]
)

VERSION_TEST = """\
from tests.test_health import call


def test_version_answers_the_version():
    assert call("/version") == ("200 OK", b'{"version": "0.3.0"}')
"""

VERSION_PAGE_SCRIPT = """\
export async function version() {
  const response = await fetch("/version");
  if (!response.ok) throw new Error(`version: ${response.status}`);
  return (await response.json()).version;
}
"""


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    )
    return done.stdout


def make_project(path: Path) -> Path:
    """The sample project as a git repository at `path`, one commit on `main`."""
    for name, content in FILES.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "dev@example.com")
    git(path, "config", "user.name", "Dev")
    git(path, "add", "--all")
    git(path, "commit", "-q", "-m", "The shop: health route, page, tests")
    return path


VERSION_PAGE_PATCH = "\n".join(
    [
        "--- a/static/index.html",
        "+++ b/static/index.html",
        "@@ -4,5 +4,6 @@",
        "   <body>",
        '     <main id="app"></main>',
        '     <script src="app.js"></script>',
        '+    <script type="module" src="version.js"></script>',
        "   </body>",
        " </html>",
        "",
    ]
)


# -- verification: checks the sandbox runs, and a /version route in two versions ----------

UNITTEST_CHECK = "python3 -m unittest discover -s tests -t ."

HEALTH_UNITTEST = """\
import unittest

from tests.test_health import call


class HealthTest(unittest.TestCase):
    def test_health_answers_ok(self):
        self.assertEqual(call("/health"), ("200 OK", b'{"status": "ok"}'))
"""

VERSION_UNITTEST = """\
import unittest

from tests.test_health import call


class VersionTest(unittest.TestCase):
    def test_version_answers_the_version(self):
        self.assertEqual(call("/version"), ("200 OK", b'{"version": "0.3.0"}'))
"""


def main_with_version(version: str) -> str:
    """app/main.py with a /version route answering `version`."""
    route = f'@route("/version")\ndef version():\n    return 200, {{"version": "{version}"}}\n\n\n'
    return FILES["app/main.py"].replace("def application", route + "def application", 1)


def add_checks(
    repo: Path,
    checks: dict[str, str],
    delivery: dict[str, object] | None = None,
    setup: list[str] | None = None,
) -> str:
    """Commit a `.devteam.yaml` naming `checks` (and `delivery`, `setup`), with a unittest
    suite that passes on the project as it is; the new head commit."""
    lines = [f"checks: {json.dumps(checks)}"]  # JSON is YAML
    if setup is not None:
        lines.append(f"setup: {json.dumps(setup)}")
    if delivery is not None:
        lines.append(f"delivery: {json.dumps(delivery)}")
    (repo / ".devteam.yaml").write_text("\n".join(lines) + "\n")
    (repo / "tests" / "test_health_suite.py").write_text(HEALTH_UNITTEST)
    git(repo, "add", "--all")
    git(repo, "commit", "-q", "-m", "Checks for DevTeam")
    return git(repo, "rev-parse", "HEAD").strip()
