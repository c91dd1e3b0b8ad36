"""The codebase analyzer's structural scan: a `CodebaseReport` with no LLM at all.

Everything is read through the MCP tools of the task's scope — the `workspace`
server (tree, read_file, search_text) and the `git` server (status, log) — so
the scan sees exactly what an agent may see and is confined to the project.
It lists the files (minus what `.gitignore` leaves out), counts lines per
language, reads the manifests for entry points and dependencies, finds the
tests and the linters, formatters and hooks in use, searches for the files the
task is about, and notes the risks a coder should know.
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from devteam.agents.manifests import (
    DOCS_AND_DATA,
    LOCKFILES,
    MANIFESTS,
    REQUIREMENTS,
    TEST_DIR_NAMES,
    ManifestFacts,
    config_file_convention,
    is_test_path,
    language_of,
    read_manifest,
    test_patterns_used,
)
from devteam.agents.metering import UsageMeter
from devteam.agents.models import (
    CodebaseReport,
    EntryPoint,
    GitInfo,
    LanguageStats,
    RelevantFile,
    TestLayout,
)
from devteam.domain.agents import AgentContext, AgentFailed
from devteam.domain.errors import ErrorCode
from devteam.domain.tasks import Usage
from devteam.mcp.errors import ToolCallFailed, ToolUnavailable
from devteam.mcp.manager import TaskScope
from devteam.settings.agents import AnalysisConfig

READ_CONCURRENCY = 8
MAX_TREE_DEPTH = 20
MAX_KEYWORDS = 8
TRUNCATED = re.compile(r"\[truncated after line (\d+) ")
EMPTY = re.compile(r"^\[.* has (\d+) lines: nothing from line \d+\]$")
MATCH_LINE = re.compile(r"^(?P<path>[^:\n]+):(?P<line>\d+): ")
MANIFEST_DEPTH = 2
"""Manifests are read at the root and one folder down (e.g. `frontend/package.json`)."""
SKIPPED_DIRS = frozenset({"venv", "env", "dist", "build", "target", "vendor", "site-packages"})

STOPWORDS = frozenset(
    """
    about above add added adding after again also always and any are around because been
    before being below between both but can change changes could create created does doing
    done each either ensure every existing feature file files fix for from full get give
    has have how implement implementing include into its just keep like make makes many
    more most must new not now one only other our out over own please return returns same
    should show some such support sure test tests than that the their them then there these
    they this those through too under update use used using very want was way well were
    what when where which while who why will with within without work would write you your
    """.split()  # noqa: SIM905 - a word list reads best as text
)
SYNONYMS: dict[str, list[tuple[str, str]]] = {
    # A keyword that rarely appears in code, and patterns that find what it means there.
    "endpoint": [(r"@(app|router|bp|blueprint)\.(get|post|put|patch|delete|route)\(", "routes")],
    "endpoints": [(r"@(app|router|bp|blueprint)\.(get|post|put|patch|delete|route)\(", "routes")],
    "route": [(r"@(app|router|bp|blueprint)\.(get|post|put|patch|delete|route)\(", "routes")],
    "api": [(r"@(app|router|bp|blueprint)\.(get|post|put|patch|delete|route)\(", "routes")],
    "page": [(r"<(template|html|main)\b|export default function", "pages")],
    "component": [(r"export default (function|class)|defineComponent\(", "components")],
}
WEB_APPS = r"\b(FastAPI|Flask|Starlette|Quart|Sanic)\(|\bexpress\(\)|\bnew Hono\(|\bfastify\("
MODULE_MAIN = r"^if __name__ == ['\"]__main__['\"]"


def keywords(text: str) -> list[str]:
    """Words of a task worth searching the code for, most specific first."""
    found: list[str] = []
    for token in re.findall(r"/[A-Za-z][\w/-]*|[A-Za-z_][A-Za-z0-9_]{2,}", text):
        word = token.rstrip("/")
        if word.lower() in STOPWORDS or word.lower() in (w.lower() for w in found):
            continue
        found.append(word)

    def specificity(word: str) -> tuple[int, int]:
        is_identifier = "_" in word or "/" in word or any(c.isupper() for c in word[1:])
        return (0 if is_identifier else 1, -len(word))

    return sorted(found, key=specificity)[:MAX_KEYWORDS]


class GitIgnore:
    """The root `.gitignore`, enough to leave out what a project does not track."""

    def __init__(self, text: str = "") -> None:
        self.patterns: list[tuple[str, bool, bool]] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", "!")):
                continue
            directory = line.endswith("/")
            line = line.strip("/")
            anchored = raw.strip().startswith("/") or "/" in line
            if line:
                self.patterns.append((line, anchored, directory))

    def ignores(self, path: str) -> bool:
        parts = PurePosixPath(path).parts
        for pattern, anchored, directory in self.patterns:
            if anchored:
                if fnmatch.fnmatch(path, pattern) or any(
                    fnmatch.fnmatch("/".join(parts[:i]), pattern) for i in range(1, len(parts))
                ):
                    return True
            else:
                candidates = parts[:-1] if directory else parts
                if any(fnmatch.fnmatch(part, pattern) for part in candidates):
                    return True
        return False


class ScanTools:
    """The scan's direct tool calls, counted, and reported as `tool.call` events."""

    def __init__(self, scope: TaskScope, context: AgentContext, meter: UsageMeter) -> None:
        self.scope = scope
        self.context = context
        self.meter = meter
        self.calls: Counter[tuple[str, str, str]] = Counter()
        self.unavailable: dict[str, str] = {}

    async def text(self, server: str, tool: str, arguments: dict[str, Any]) -> str | None:
        """The tool's text answer; None when it answered with an error, or (for servers
        other than `workspace`) could not answer. The workspace being out stops the scan."""
        try:
            answer = await self.scope.call(server, tool, arguments)
        except (ToolUnavailable, ToolCallFailed) as exc:
            self.calls[(server, tool, "unavailable")] += 1
            if server == "workspace":
                raise AgentFailed(
                    ErrorCode.TOOL_UNAVAILABLE, f"the workspace tools are unavailable: {exc}"
                ) from None
            self.unavailable.setdefault(server, exc.message)
            return None
        self.calls[(server, tool, "tool_error" if answer.is_error else "ok")] += 1
        return None if answer.is_error else answer.text

    async def report(self) -> None:
        by_tool: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
        for (server, tool, outcome), count in sorted(self.calls.items()):
            by_tool[(server, tool)][outcome] = count
        total = sum(self.calls.values())
        self.calls.clear()
        for (server, tool), outcomes in by_tool.items():
            outcome = next(iter(outcomes)) if len(outcomes) == 1 else "mixed"
            await self.context.tool_call(
                server, tool, outcome, calls=sum(outcomes.values()), outcomes=outcomes
            )
        if total:
            self.meter.add(Usage(tool_calls=total))


@dataclass
class Listing:
    files: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    truncated: bool = False


def parse_tree(text: str) -> Listing:
    listing = Listing()
    for line in text.splitlines():
        if line.startswith("[more entries not shown"):
            listing.truncated = True
        elif line.startswith("[") or line.endswith(" (symlink)"):
            continue
        elif line.endswith("/"):
            listing.dirs.append(line.rstrip("/"))
        else:
            listing.files.append(line)
    return listing


def count_lines(text: str) -> int:
    if (empty := EMPTY.match(text.strip())) is not None:
        return int(empty.group(1))
    if (cut := TRUNCATED.search(text)) is not None:
        return int(cut.group(1))
    return text.count("\n") + (1 if text and not text.endswith("\n") else 0)


def matched_paths(text: str | None) -> Counter[str]:
    found: Counter[str] = Counter()
    for line in (text or "").splitlines():
        if (match := MATCH_LINE.match(line)) is not None:
            found[match.group("path")] += 1
    return found


class StructuralScan:
    def __init__(self, tools: ScanTools, config: AnalysisConfig) -> None:
        self.tools = tools
        self.config = config
        self.repo_path = str(tools.scope.workspace)
        self.facts = ManifestFacts()
        self.risks: list[str] = []

    async def run(self, task: str) -> CodebaseReport:
        ignore = GitIgnore(await self._read(".gitignore") or "")
        listing = await self._list(ignore)
        files = listing.files
        hidden = await self._root_entries()
        await self._read_manifests(files)
        languages, measured, line_counts = await self._measure(files)
        await self._find_entry_points(ignore)
        tests = self._test_layout(files, listing.dirs)
        await self._conventions(files, hidden)
        relevant = await self._relevant(task, ignore, set(files))
        git = await self._git()
        self._note_risks(files, hidden, listing, tests, line_counts, relevant, git)
        await self.tools.report()
        report = CodebaseReport(
            summary="",
            languages=languages,
            total_files=len(files),
            total_lines=sum(line_counts.values()),
            files_measured=measured,
            source_dirs=source_dirs(files),
            entry_points=_unique_entry_points(self.facts.entry_points),
            dependencies=self.facts.dependencies,
            test_layout=tests,
            conventions=self.facts.conventions,
            relevant_files=relevant,
            risks=self.risks,
            git=git,
        )
        return report.model_copy(update={"summary": summarize(report)})

    # -- reading -----------------------------------------------------------------------

    async def _read(self, path: str) -> str | None:
        return await self.tools.text("workspace", "read_file", {"path": path})

    async def _list(self, ignore: GitIgnore) -> Listing:
        text = await self.tools.text(
            "workspace", "tree", {"path": ".", "max_depth": MAX_TREE_DEPTH}
        )
        listing = parse_tree(text or "")

        def kept(path: str) -> bool:
            parts = PurePosixPath(path).parts
            return not ignore.ignores(path) and not any(p in SKIPPED_DIRS for p in parts)

        listing.files = [f for f in listing.files if kept(f)]
        listing.dirs = [d for d in listing.dirs if kept(d)]
        return listing

    async def _root_entries(self) -> list[str]:
        """Hidden files and folders at the root (config files live there)."""
        text = await self.tools.text(
            "workspace", "tree", {"path": ".", "max_depth": 1, "include_hidden": True}
        )
        names = [line.rstrip("/") for line in (text or "").splitlines() if line.startswith(".")]
        if ".github" in names:
            workflows = await self.tools.text(
                "workspace",
                "tree",
                {"path": ".github/workflows", "max_depth": 1, "include_hidden": True},
            )
            names += [w for w in (workflows or "").splitlines() if w.endswith((".yml", ".yaml"))]
        return names

    async def _read_manifests(self, files: list[str]) -> None:
        wanted = [
            f
            for f in files
            if len(PurePosixPath(f).parts) <= MANIFEST_DEPTH
            and (PurePosixPath(f).name in MANIFESTS or REQUIREMENTS.match(PurePosixPath(f).name))
        ]
        texts = await asyncio.gather(*(self._read(f) for f in wanted))
        for path, text in zip(wanted, texts, strict=True):
            if text is not None:
                read_manifest(PurePosixPath(path).name, text, path, self.facts)
        self.risks += self.facts.problems

    async def _measure(self, files: list[str]) -> tuple[list[LanguageStats], int, dict[str, int]]:
        by_language: dict[str, list[str]] = defaultdict(list)
        for path in files:
            if (language := language_of(path)) is not None:
                by_language[language].append(path)
        # Code first, then docs and data, as far as the read budget goes.
        ordered = sorted(
            (p for paths in by_language.values() for p in paths),
            key=lambda p: (language_of(p) in DOCS_AND_DATA, p),
        )
        to_read = ordered[: self.config.max_files_read]
        gate = asyncio.Semaphore(READ_CONCURRENCY)

        async def lines_of(path: str) -> int | None:
            async with gate:
                text = await self._read(path)
            return None if text is None else count_lines(text)

        counted = await asyncio.gather(*(lines_of(p) for p in to_read))
        line_counts = {p: n for p, n in zip(to_read, counted, strict=True) if n is not None}
        stats = [
            LanguageStats(
                language=language,
                files=len(paths),
                lines=sum(line_counts.get(p, 0) for p in paths),
            )
            for language, paths in by_language.items()
        ]
        stats.sort(key=lambda s: (-s.lines, -s.files, s.language))
        if len(to_read) < len(ordered):
            self.risks.append(
                f"only {len(to_read)} of {len(ordered)} files were measured "
                "(analysis.max_files_read in agents.yaml)"
            )
        return stats, len(line_counts), line_counts

    async def _search(self, pattern: str, glob: list[str] | None = None, **options: Any) -> str:
        arguments: dict[str, Any] = {"pattern": pattern, **options}
        if glob:
            arguments["glob"] = glob
        return await self.tools.text("workspace", "search_text", arguments) or ""

    # -- facts --------------------------------------------------------------------------

    async def _find_entry_points(self, ignore: GitIgnore) -> None:
        mains = await self._search(MODULE_MAIN, ["*.py"], max_results=50)
        for path in matched_paths(mains):
            if not ignore.ignores(path):
                self.facts.entry_points.append(
                    EntryPoint(name=path, kind="module_main", target=path, defined_in=path)
                )
        apps = await self._search(WEB_APPS, ["*.py", "*.js", "*.ts", "*.mjs"], max_results=20)
        for line in apps.splitlines():
            if (match := MATCH_LINE.match(line)) is not None and not ignore.ignores(
                match.group("path")
            ):
                path = match.group("path")
                framework = re.search(WEB_APPS, line)
                name = (framework.group(0) if framework else "app").rstrip("(")
                self.facts.entry_points.append(
                    EntryPoint(
                        name=name.removeprefix("new ").rstrip("()"),
                        kind="web_app",
                        target=f"{path}:{match.group('line')}",
                        defined_in=path,
                    )
                )

    def _test_layout(self, files: list[str], dirs: list[str]) -> TestLayout:
        test_files = [f for f in files if is_test_path(f)]
        test_dirs = sorted(
            {
                "/".join(PurePosixPath(d).parts[: i + 1])
                for d in dirs
                for i, part in enumerate(PurePosixPath(d).parts)
                if part in TEST_DIR_NAMES
            }
        )
        # Keep the outermost test folders only (tests/, not tests/unit/ as well).
        outermost = [d for d in test_dirs if not any(d.startswith(o + "/") for o in test_dirs)]
        for name in ("pytest.ini", "tox.ini", "noxfile.py", "conftest.py"):
            if name in files:
                if name in ("pytest.ini", "conftest.py"):
                    self.facts.add_framework("pytest", name)
                elif name not in self.facts.test_config_files:
                    self.facts.test_config_files.append(name)
        for path in files:
            name = PurePosixPath(path).name
            if re.match(r"^(jest|vitest|playwright|cypress)\.config\.[cm]?[jt]s$", name):
                self.facts.add_framework(name.split(".", 1)[0], path)
        if any(f.endswith(".py") for f in test_files) and any(
            PurePosixPath(f).name == "conftest.py" for f in files
        ):
            self.facts.add_framework("pytest")
        return TestLayout(
            frameworks=self.facts.test_frameworks,
            directories=outermost,
            test_files=len(test_files),
            patterns=test_patterns_used(test_files),
            config_files=self.facts.test_config_files,
        )

    async def _conventions(self, files: list[str], hidden: list[str]) -> None:
        roots = [f for f in files if "/" not in f] + [h for h in hidden if "/" not in h]
        for name in roots:
            if (found := config_file_convention(name)) is not None:
                tool, kind = found
                notes = ""
                if tool == "pre-commit":
                    text = await self._read(name) or ""
                    hooks = re.findall(r"^\s*-\s*id:\s*([\w.-]+)", text, re.MULTILINE)
                    notes = "hooks: " + ", ".join(hooks) if hooks else ""
                self.facts.add_convention(tool, kind, name, notes)
        for path in hidden:
            if path.startswith(".github/workflows/"):
                self.facts.add_convention("GitHub Actions", "ci", path)
        if ".gitlab-ci.yml" in hidden:
            self.facts.add_convention("GitLab CI", "ci", ".gitlab-ci.yml")

    async def _relevant(self, task: str, ignore: GitIgnore, files: set[str]) -> list[RelevantFile]:
        scores: Counter[str] = Counter()
        reasons: dict[str, list[str]] = defaultdict(list)
        searches: list[tuple[str, str]] = []
        for word in keywords(task):
            searches.append((re.escape(word.lstrip("/")) if "/" in word else re.escape(word), word))
            searches += SYNONYMS.get(word.lower(), [])
        seen: set[str] = set()
        for pattern, label in searches:
            if pattern in seen:
                continue
            seen.add(pattern)
            hits = matched_paths(await self._search(pattern, ignore_case=True, max_results=100))
            for path, count in hits.items():
                if path not in files or ignore.ignores(path):
                    continue
                weight = 2 if language_of(path) in DOCS_AND_DATA else 10
                scores[path] += weight + min(count, 5)
                reasons[path].append(f"{label} ({count})")
            for path in files:
                if label.lower().strip("/") in path.lower() and path not in hits:
                    scores[path] += 6
                    reasons[path].append(f"{label} (path)")
        ranked = sorted(scores, key=lambda p: (-scores[p], p))[: self.config.max_relevant_files]
        return [
            RelevantFile(path=path, reason="mentions " + ", ".join(reasons[path]))
            for path in ranked
        ]

    async def _git(self) -> GitInfo:
        info = GitInfo()
        status = await self.tools.text("git", "git_status", {"repo_path": self.repo_path})
        if status is not None:
            if (branch := re.search(r"^On branch (\S+)", status, re.MULTILINE)) is not None:
                info.branch = branch.group(1)
            elif "HEAD detached" in status:
                info.branch = None
            info.uncommitted_changes = any(
                marker in status
                for marker in ("Changes to be committed", "Changes not staged", "Untracked files")
            )
        log = await self.tools.text("git", "git_log", {"repo_path": self.repo_path, "max_count": 5})
        if log is not None:
            commits = re.findall(r"^Commit: ([0-9a-f]{7,40})", log, re.MULTILINE)
            info.head = commits[0] if commits else None
            info.recent_commits = [
                subject.strip()
                for subject in re.findall(r"^Message: (.*)$", log, re.MULTILINE)
                if subject.strip()
            ]
        return info

    def _note_risks(
        self,
        files: list[str],
        hidden: list[str],
        listing: Listing,
        tests: TestLayout,
        line_counts: dict[str, int],
        relevant: list[RelevantFile],
        git: GitInfo,
    ) -> None:
        risks = self.risks
        if listing.truncated:
            risks.append("the file listing was cut short: the project is larger than shown")
        if tests.test_files == 0:
            risks.append("no tests found: a change cannot be checked against existing tests")
        code = [p for p in line_counts if language_of(p) not in DOCS_AND_DATA]
        large = sorted(
            (p for p in code if line_counts[p] > self.config.large_file_lines),
            key=lambda p: -line_counts[p],
        )
        if large:
            shown = ", ".join(f"{p} ({line_counts[p]} lines)" for p in large[:5])
            risks.append(f"large source files, harder to change safely: {shown}")
        names = {PurePosixPath(f).name for f in files} | set(hidden)
        if self.facts.dependencies and not names & LOCKFILES:
            risks.append("dependencies are not locked (no lockfile): installs may differ")
        if not any(c.kind in ("linter", "formatter") for c in self.facts.conventions):
            risks.append("no linter or formatter configured: follow the style of nearby code")
        if not relevant:
            risks.append("no file mentions the task's keywords: the change may be all new code")
        if git.uncommitted_changes:
            risks.append(
                "the project's checkout has uncommitted changes: coders start from the last "
                "commit and do not see them"
            )
        for server, reason in self.tools.unavailable.items():
            risks.append(f"the {server} tools were unavailable: {reason}")


def source_dirs(files: Iterable[str]) -> list[str]:
    """Where the code lives: top-level Python packages, or the usual source folders."""
    files = list(files)
    packages = {str(PurePosixPath(f).parent) for f in files if f.endswith("/__init__.py")}
    packages |= {"." for f in files if f == "__init__.py"}
    found = sorted(
        p
        for p in packages
        if str(PurePosixPath(p).parent) not in packages
        and not any(part in TEST_DIR_NAMES for part in PurePosixPath(p).parts)
    )
    for folder in ("src", "lib", "app", "cmd", "pkg", "internal", "frontend", "web"):
        holds_code = any(
            f.startswith(folder + "/") and language_of(f) not in (None, *DOCS_AND_DATA)
            for f in files
        )
        if holds_code and not any(p == folder or p.startswith(folder + "/") for p in found):
            found.append(folder)
    return found


def _unique_entry_points(points: list[EntryPoint]) -> list[EntryPoint]:
    seen: set[tuple[str, str]] = set()
    unique = []
    for point in points:
        if (point.kind, point.target) not in seen:
            seen.add((point.kind, point.target))
            unique.append(point)
    return unique


def summarize(report: CodebaseReport) -> str:
    code = [s for s in report.languages if s.language not in DOCS_AND_DATA]
    main = code[0].language if code else (report.languages[0].language if report.languages else "")
    parts = [
        f"{main + ' project' if main else 'Project'}: {report.total_files} files, "
        f"{report.total_lines} lines"
        + (
            " (" + ", ".join(f"{s.language} {s.lines}" for s in code[:3]) + ")"
            if len(code) > 1
            else ""
        )
        + "."
    ]
    if report.source_dirs:
        parts.append(f"Code in {', '.join(report.source_dirs)}.")
    named = [e.name for e in report.entry_points if e.kind in ("console_script", "bin", "script")]
    if named:
        parts.append(f"Entry points: {', '.join(named[:5])}.")
    layout = report.test_layout
    if layout.test_files:
        where = f" under {', '.join(layout.directories)}" if layout.directories else ""
        frameworks = f" ({', '.join(layout.frameworks)})" if layout.frameworks else ""
        parts.append(f"{layout.test_files} test files{where}{frameworks}.")
    else:
        parts.append("No tests found.")
    tools = sorted({c.tool for c in report.conventions if c.kind != "ci"})
    if tools:
        parts.append(f"Tooling: {', '.join(tools)}.")
    return " ".join(parts)
