"""The agents' typed outputs: what a task's `result.output` holds, by agent type.

`research` -> `ResearchReport`, `codebase_analyzer` -> `CodebaseReport`,
`frontend` and `backend` -> `CodeChange`, `reviewer` -> `Review`, `delivery` ->
`Delivery`. Field docstrings become the JSON
schema's descriptions, which the LLM reads when it fills the model in.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Confidence = Literal["low", "medium", "high"]
Scope = Literal["runtime", "dev", "optional", "build"]
Ecosystem = Literal["python", "node", "go", "rust"]
EntryKind = Literal[
    "console_script", "gui_script", "module_main", "script", "bin", "web_app", "main"
]
FileStatus = Literal["added", "modified", "deleted", "renamed", "copied", "type_changed"]
ConventionKind = Literal["linter", "formatter", "type_checker", "hooks", "editor", "ci"]


class Output(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- research -------------------------------------------------------------------------------


class Source(Output):
    title: str
    """What the source is, e.g. "FastAPI docs: Dependencies" or "RFC 9110 §15.5"."""
    url: str | None = None
    """Where to find it, when it has an address."""
    kind: Literal["web", "documentation", "code", "model_knowledge"] = "web"
    """`model_knowledge`: what the model knows without a tool; check it before relying on it."""


class Finding(Output):
    statement: str
    """One fact or recommendation, in a sentence."""
    detail: str = ""
    """Why it matters for the task, how to apply it, caveats."""
    sources: list[Source] = Field(default_factory=list)


class ResearchReport(Output):
    summary: str
    """The answer in a short paragraph: what to do and why."""
    findings: list[Finding] = Field(default_factory=list)
    open_questions: list[str] = Field(default_factory=list)
    """What could not be settled and who or what could settle it."""
    confidence: Confidence = "medium"
    """`low` when the findings rest on the model's own knowledge or thin evidence."""


# -- codebase analysis ---------------------------------------------------------------------


class LanguageStats(Output):
    language: str
    files: int
    lines: int
    """Lines of the files read (see `CodebaseReport.files_measured`)."""


class EntryPoint(Output):
    name: str
    kind: EntryKind
    target: str
    """What it runs, e.g. `devteam.cli:app` or `src/index.ts`."""
    defined_in: str


class Dependency(Output):
    name: str
    spec: str = ""
    """The version constraint as written."""
    ecosystem: Ecosystem
    scope: Scope = "runtime"
    defined_in: str


class TestLayout(Output):
    frameworks: list[str] = Field(default_factory=list)
    directories: list[str] = Field(default_factory=list)
    """Folders holding tests."""
    test_files: int = 0
    patterns: list[str] = Field(default_factory=list)
    """File name patterns the tests follow, e.g. `test_*.py`."""
    config_files: list[str] = Field(default_factory=list)


class Convention(Output):
    tool: str
    kind: ConventionKind
    config_file: str
    notes: str = ""


class RelevantFile(Output):
    path: str
    reason: str
    """Why it matters for the task, e.g. the keywords it matched."""


class GitInfo(Output):
    branch: str | None = None
    head: str | None = None
    recent_commits: list[str] = Field(default_factory=list)
    """Subjects of the latest commits, newest first."""
    uncommitted_changes: bool = False


class CodebaseReport(Output):
    summary: str
    languages: list[LanguageStats] = Field(default_factory=list)
    """By lines, largest first."""
    total_files: int = 0
    total_lines: int = 0
    files_measured: int = 0
    """Files whose lines were counted (the scan reads up to a configured number)."""
    source_dirs: list[str] = Field(default_factory=list)
    entry_points: list[EntryPoint] = Field(default_factory=list)
    dependencies: list[Dependency] = Field(default_factory=list)
    test_layout: TestLayout = Field(default_factory=TestLayout)
    conventions: list[Convention] = Field(default_factory=list)
    relevant_files: list[RelevantFile] = Field(default_factory=list)
    """Files the task is likely to touch or needs read first."""
    risks: list[str] = Field(default_factory=list)
    git: GitInfo = Field(default_factory=GitInfo)
    narrative: str | None = None
    """With an LLM: how the codebase is organised, in prose."""
    task_notes: str | None = None
    """With an LLM: what matters for the task at hand."""
    analysis: Literal["structural", "structural+llm"] = "structural"


class AnalysisNarrative(Output):
    """What the LLM adds to the structural report."""

    summary: str
    """The codebase in two or three sentences, for someone about to work on the task."""
    narrative: str
    """How the code is organised: layers, main modules, data flow, where things live."""
    task_notes: str
    """What matters for this task: where the change goes, what to follow, what to avoid."""
    relevant_files: list[RelevantFile] = Field(default_factory=list)
    """Files to read or change for the task, most important first."""
    risks: list[str] = Field(default_factory=list)
    """Risks for this task that the structural scan could not see."""


# -- code changes -------------------------------------------------------------------------


class FileChange(Output):
    path: str
    status: FileStatus
    additions: int = 0
    deletions: int = 0
    old_path: str | None = None
    """The previous path of a renamed or copied file."""


class CheckOutcome(Output):
    """One check of the project (`.devteam.yaml` `checks`), run by DevTeam in the sandbox."""

    name: str
    command: str
    exit_code: int
    passed: bool
    was_failing_before: bool = False
    """The check failed on the base commit too: the change is not blamed for it."""
    duration_s: float = 0.0
    output_tail: str = ""
    """The end of what the command printed (stdout and stderr together)."""

    @property
    def newly_failing(self) -> bool:
        return not self.passed and not self.was_failing_before


class CodeChange(Output):
    summary: str
    """What changed and why, for a reviewer."""
    branch: str
    """The git branch holding the change, in the project's repository."""
    base_commit: str
    """The commit the change starts from; `diff` applies to it."""
    head_commit: str | None = None
    """The commit on `branch` holding the change (None when nothing changed)."""
    files_changed: list[FileChange] = Field(default_factory=list)
    diff: str = ""
    """Unified diff from `base_commit` (`git apply` accepts it)."""
    tests_added: list[str] = Field(default_factory=list)
    """Test files the change adds or changes."""
    follow_ups: list[str] = Field(default_factory=list)
    """Work left for later: what and why."""
    checks: list[CheckOutcome] = Field(default_factory=list)
    """The project's checks on the final change, as DevTeam ran them (not the model)."""
    verified: bool = False
    """Every check passes, or fails only as it did on the base commit."""
    fix_rounds: int = 0
    """Times failing checks were sent back to the model."""
    verification: str = ""
    """How the change was verified, or why it could not be (no checks, no sandbox)."""
    revision: int = 1
    """1 for the first change on `branch`; n for the (n-1)th revision after a review."""
    delivery: Delivery | None = None
    """For a task handed to the coder directly (no plan): its push, when the project's
    `.devteam.yaml` asks for one."""


class CoderReport(Output):
    """What a coder tells about its change; the diff itself is read from git."""

    summary: str
    """What you changed and why, for a reviewer: the behaviour, the files, the tests."""
    follow_ups: list[str] = Field(default_factory=list)
    """Work you left for later, each with why."""


# -- review ---------------------------------------------------------------------------------

Verdict = Literal["approve", "request_changes"]
Severity = Literal["info", "minor", "major", "critical"]


class ReviewFinding(Output):
    file: str
    """The file the finding is about, relative to the repository root."""
    line: int | None = None
    """The line in the changed file, when the finding is about one."""
    severity: Severity = "minor"
    """`major` and `critical` findings must be fixed before the change is approved."""
    message: str
    """What is wrong and what to do about it."""


class ReviewReport(Output):
    """The reviewer's answer."""

    verdict: Verdict
    """`approve` when the change does the task, is tested and its checks pass (or fail only
    as they did before); `request_changes` otherwise."""
    summary: str
    """The review in a few sentences, for the coder and the user."""
    findings: list[ReviewFinding] = Field(default_factory=list)
    """What to change, most important first; empty when there is nothing."""


class Review(ReviewReport):
    round: int = 1
    """1 for the first review of the work, n for the review of its (n-1)th revision."""
    reviewed: list[str] = Field(default_factory=list)
    """The keys of the changes reviewed."""
    branches: list[str] = Field(default_factory=list)
    """The branches holding them."""


# -- delivery -------------------------------------------------------------------------------


class PushedBranch(Output):
    branch: str
    commit: str
    pull_request_url: str | None = None


class Delivery(Output):
    summary: str
    delivered: bool
    """The branches are on the remote (and their pull requests open, where configured)."""
    remote: str | None = None
    branches: list[PushedBranch] = Field(default_factory=list)
    reason: str | None = None
    """Why nothing was delivered: no delivery configured, checks red, review not approving."""


CodeChange.model_rebuild()
