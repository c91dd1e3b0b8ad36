"""Paths confined to the workspace root.

A tool's path is always relative to the root. Absolute paths and `..` are
refused outright; what is left is resolved (following symlinks) and must still
lie inside the root, so a symlink leading out is refused too, whether it is the
file itself or one of its parent folders.

Writes are refused on any path through a `.git` (in any spelling git honours on
some file system: `.GIT`, `.git.`, `git~1`, …), named directly or reached
through a symlink: the repository's git files are DevTeam's, and a `.git` file
or folder planted in a worktree would make git read configuration (and run the
commands it names) that the model wrote.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from devteam.gitsafety import names_dot_git


class PathRefused(ValueError):
    """A path that is not inside the workspace."""


class WorkspaceRoot:
    def __init__(self, root: Path | str) -> None:
        resolved = Path(root).expanduser().resolve()
        if not resolved.is_dir():
            raise NotADirectoryError(f"workspace root is not a folder: {root}")
        self.path = resolved

    def resolve(self, relative: str) -> Path:
        """The real path of `relative` inside the root, or `PathRefused`."""
        if "\x00" in relative:
            raise PathRefused("a path cannot contain NUL characters")
        text = relative.strip() or "."
        pure = PurePosixPath(text.replace("\\", "/"))
        if pure.is_absolute() or Path(text).is_absolute() or Path(text).drive:
            raise PathRefused(
                f"{relative!r}: absolute paths are not allowed; "
                "use a path relative to the workspace root"
            )
        if ".." in pure.parts:
            raise PathRefused(f"{relative!r}: '..' is not allowed; paths stay inside the workspace")
        resolved = (self.path / pure).resolve()
        if not resolved.is_relative_to(self.path):
            raise PathRefused(f"{relative!r} leads outside the workspace (through a symlink)")
        return resolved

    def resolve_writable(self, relative: str) -> Path:
        """`resolve`, refusing a path through a `.git` (see the module's docstring)."""
        resolved = self.resolve(relative)
        pure = PurePosixPath(relative.strip().replace("\\", "/"))
        if names_dot_git(pure) or names_dot_git(resolved.relative_to(self.path)):
            raise PathRefused(
                f"{relative!r}: .git is refused; git's own files are not part of the "
                "workspace and cannot be written, patched, renamed or deleted"
            )
        return resolved

    def relative(self, path: Path) -> str:
        """`path` (inside the root) as the tools show it: POSIX, relative, `.` for the root."""
        return path.relative_to(self.path).as_posix() or "."

    def contains(self, path: Path) -> bool:
        """Whether `path`, with symlinks followed, lies inside the root."""
        try:
            return path.resolve().is_relative_to(self.path)
        except (OSError, RuntimeError):
            return False
