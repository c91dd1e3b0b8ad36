"""The environment every `git` DevTeam starts runs with, so a repository's files run nothing.

A worktree's files are written by a model, and a prompt injection in any
repository can steer what it writes. Git runs programs named in configuration
(hooks, `core.fsmonitor`, `core.sshCommand`, editors, pagers, askpass, external
diff and textconv drivers, clean/smudge filters, `protocol.ext`), and it finds
configuration in places a worktree can reach: the `.git` file (which names the
git directory, hence its config), nested `.git` folders discovered from a
subdirectory, `include.path`. So every git process DevTeam starts, its own and
the `git` MCP server's:

- names its repository (`GIT_DIR` / `--git-dir`, `GIT_WORK_TREE` / `--work-tree`):
  nothing is discovered, and a `.git` in the worktree is never read;
- reads no system or global configuration (`GIT_CONFIG_NOSYSTEM`,
  `GIT_CONFIG_GLOBAL=/dev/null`), no system or user attributes;
- gets the overrides below through `GIT_CONFIG_COUNT` / `GIT_CONFIG_KEY_n` /
  `GIT_CONFIG_VALUE_n`, which win over every configuration file and are passed on
  to the git processes git itself starts;
- carries none of our own `GIT_*` variables.

The repository's own configuration (`<repo>/.git/config`) is the operator's; it
lies outside every worktree, so the model cannot write it, and `Worktree.verify`
checks that nothing it includes lies inside one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePath

PROTOCOLS = frozenset({"file", "git", "http", "https", "ssh"})
"""Transports delivery may allow; every other one (`ext::` above all) stays refused."""

NOWHERE = os.devnull

_IGNORED_BY_HFS = re.compile("[\u200c-\u200f\u202a-\u202e\u206a-\u206f\ufeff]")
"""Code points macOS drops from file names (git's `is_hfs_dotgit` skips them too)."""


def is_dot_git(name: str) -> bool:
    """Whether a file name means `.git` to git on some file system.

    Any case (`.GIT`), trailing dots and spaces and an NTFS stream suffix
    (`.git.`, `.git::$INDEX_ALLOCATION`), the 8.3 short name `git~1`, and code
    points HFS+ ignores (`.g\u200cit`).
    """
    folded = _IGNORED_BY_HFS.sub("", name).casefold().split(":", 1)[0].rstrip(". ")
    return folded in (".git", "git~1")


def names_dot_git(path: PurePath) -> bool:
    """Whether any component of `path` is a `.git` (see `is_dot_git`)."""
    return any(is_dot_git(part) for part in path.parts)


OVERRIDES: tuple[tuple[str, str], ...] = (
    ("core.hooksPath", NOWHERE),
    ("core.fsmonitor", "false"),
    ("core.untrackedCache", "false"),
    ("core.attributesFile", NOWHERE),
    ("core.excludesFile", NOWHERE),
    ("core.pager", "cat"),
    ("core.editor", "true"),
    ("core.askPass", ""),
    ("sequence.editor", "true"),
    ("submodule.recurse", "false"),
    ("diff.ignoreSubmodules", "all"),
    ("status.submoduleSummary", "false"),
    ("fetch.recurseSubmodules", "false"),
    ("push.recurseSubmodules", "no"),
    ("safe.bareRepository", "explicit"),
    ("protocol.allow", "never"),
    ("commit.gpgSign", "false"),
    ("tag.gpgSign", "false"),
    ("log.showSignature", "false"),
    ("gc.auto", "0"),
    ("maintenance.auto", "false"),
    ("credential.interactive", "false"),
)
"""Configuration that wins over the repository's: nothing git could start from it runs."""

VARIABLES: Mapping[str, str] = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_SYSTEM": NOWHERE,
    "GIT_CONFIG_GLOBAL": NOWHERE,
    "GIT_ATTR_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
    # Empty, not unset: git then skips core.askPass and SSH_ASKPASS alike.
    "GIT_ASKPASS": "",
    "GIT_PAGER": "cat",
    "GIT_EDITOR": "true",
    "GIT_SEQUENCE_EDITOR": "true",
    # Empty, not unset: git then ignores core.gitProxy (a command for git://).
    "GIT_PROXY_COMMAND": "",
    "GIT_PROTOCOL_FROM_USER": "0",
    "GIT_OPTIONAL_LOCKS": "0",
    "LC_ALL": "C",
}

DROPPED = frozenset({"SSH_ASKPASS", "PAGER", "EDITOR", "VISUAL"})
"""Variables of ours a git process never sees, besides every `GIT_*` one."""


def hardened_environment(
    *,
    git_dir: Path | str | None = None,
    work_tree: Path | str | None = None,
    protocols: Iterable[str] = (),
    ssh_command: str | None = None,
) -> dict[str, str]:
    """The variables to add to a git process's environment (one without `GIT_*` of its own).

    `git_dir` and `work_tree` name the repository (`GIT_DIR`, `GIT_WORK_TREE`);
    `protocols` are the transports allowed (none by default: local commands need
    none); `ssh_command` is the operator's ssh command (plain `ssh` otherwise, so a
    repository's `core.sshCommand` never runs).
    """
    allowed = sorted(set(protocols))
    if unknown := [p for p in allowed if p not in PROTOCOLS]:
        raise ValueError(f"unknown git protocols: {', '.join(unknown)}")
    overrides = [
        *OVERRIDES,
        *((f"protocol.{name}.allow", "always") for name in allowed),
        ("core.sshCommand", ssh_command or "ssh"),
    ]
    env = dict(VARIABLES)
    env["GIT_SSH_COMMAND"] = ssh_command or "ssh"
    env["GIT_CONFIG_COUNT"] = str(len(overrides))
    for index, (key, value) in enumerate(overrides):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    if git_dir is not None:
        env["GIT_DIR"] = str(git_dir)
    if work_tree is not None:
        env["GIT_WORK_TREE"] = str(work_tree)
    return env


def process_environment(
    base: Mapping[str, str] | None = None,
    *,
    git_dir: Path | str | None = None,
    work_tree: Path | str | None = None,
    protocols: Iterable[str] = (),
    ssh_command: str | None = None,
) -> dict[str, str]:
    """`base` (our environment by default) without `GIT_*` and the like, hardened."""
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if not k.startswith("GIT_") and k not in DROPPED}
    env.update(
        hardened_environment(
            git_dir=git_dir, work_tree=work_tree, protocols=protocols, ssh_command=ssh_command
        )
    )
    return env
