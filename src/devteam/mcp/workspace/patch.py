"""Parse and apply unified diffs (`diff -u`, `git diff`) in memory.

`parse_patch` reads the file sections of a diff; `apply_hunks` applies one
file's hunks to its text. A hunk is placed where its header says, or — when the
file moved on since the diff was made — at the nearest place where its context
and removed lines match exactly. Nothing is written here: the caller writes
every file only once all of them applied, so a patch applies whole or not at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

DEV_NULL = "/dev/null"
_HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_NO_NEWLINE = "\\ No newline at end of file"


class PatchError(ValueError):
    """The diff is malformed, or does not apply to the files as they are."""


@dataclass
class Hunk:
    old_start: int
    old_len: int
    new_start: int
    new_len: int
    lines: list[tuple[str, str]] = field(default_factory=list)
    """(' ' | '-' | '+', text without its line ending)."""
    old_ends_without_newline: bool = False
    new_ends_without_newline: bool = False

    @property
    def old_lines(self) -> list[str]:
        return [text for op, text in self.lines if op in " -"]

    @property
    def new_lines(self) -> list[str]:
        return [text for op, text in self.lines if op in " +"]


@dataclass
class FilePatch:
    old_path: str | None
    """None for a file the patch creates."""
    new_path: str | None
    """None for a file the patch deletes."""
    hunks: list[Hunk] = field(default_factory=list)

    @property
    def path(self) -> str:
        path = self.new_path or self.old_path
        assert path is not None  # parse_patch refuses a section with neither
        return path


def _strip_path(raw: str) -> str | None:
    path = raw.split("\t", 1)[0].strip()
    if path == DEV_NULL:
        return None
    if path.startswith('"') and path.endswith('"') and len(path) > 1:
        path = path[1:-1]
    if path.startswith(("a/", "b/")):
        path = path[2:]
    if not path:
        raise PatchError("a file header names no path")
    return path


def parse_patch(text: str) -> list[FilePatch]:
    """The file sections of a unified diff, in order."""
    lines = text.splitlines()
    patches: list[FilePatch] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.startswith("--- ") or not (
            index + 1 < len(lines) and lines[index + 1].startswith("+++ ")
        ):
            index += 1
            continue
        old_path = _strip_path(line[4:])
        new_path = _strip_path(lines[index + 1][4:])
        if old_path is None and new_path is None:
            raise PatchError(f"line {index + 1}: both sides of a file header are /dev/null")
        patch = FilePatch(old_path, new_path)
        index += 2
        while index < len(lines) and lines[index].startswith("@@"):
            hunk, index = _parse_hunk(lines, index)
            patch.hunks.append(hunk)
        if not patch.hunks and not (old_path is None or new_path is None):
            raise PatchError(f"{patch.path}: the file section has no hunks")
        patches.append(patch)
    if not patches:
        raise PatchError("no file sections found: expected '--- a/path' and '+++ b/path' lines")
    return patches


def _parse_hunk(lines: list[str], index: int) -> tuple[Hunk, int]:
    match = _HUNK_HEADER.match(lines[index])
    if match is None:
        raise PatchError(f"line {index + 1}: malformed hunk header {lines[index]!r}")
    old_start, old_len, new_start, new_len = (
        int(match.group(1)),
        int(match.group(2) or 1),
        int(match.group(3)),
        int(match.group(4) or 1),
    )
    hunk = Hunk(old_start, old_len, new_start, new_len)
    index += 1
    old_seen = new_seen = 0
    while index < len(lines) and (old_seen < old_len or new_seen < new_len):
        line = lines[index]
        if line == _NO_NEWLINE:
            index += 1
            continue
        op, body = (line[0], line[1:]) if line else (" ", "")
        if op not in " -+":
            raise PatchError(f"line {index + 1}: unexpected line in a hunk: {line[:60]!r}")
        hunk.lines.append((op, body))
        old_seen += op in " -"
        new_seen += op in " +"
        index += 1
        if index < len(lines) and lines[index] == _NO_NEWLINE:
            if op in " -":
                hunk.old_ends_without_newline = True
            if op in " +":
                hunk.new_ends_without_newline = True
    if old_seen != old_len or new_seen != new_len:
        raise PatchError(
            f"hunk at line {old_start}: expected {old_len} old and {new_len} new lines, "
            f"found {old_seen} and {new_seen}"
        )
    if index < len(lines) and lines[index] == _NO_NEWLINE:
        index += 1
    return hunk, index


def apply_hunks(original: str, hunks: list[Hunk], *, path: str) -> str:
    """`original` with `hunks` applied, or `PatchError` naming the hunk that does not fit."""
    newline = "\r\n" if "\r\n" in original else "\n"
    lines = original.splitlines()
    ends_with_newline = original.endswith(("\n", "\r"))
    offset = 0
    for number, hunk in enumerate(hunks, start=1):
        old = hunk.old_lines
        expected = (hunk.old_start if hunk.old_len == 0 else hunk.old_start - 1) + offset
        position = _locate(lines, old, expected)
        if position is None:
            raise PatchError(
                f"{path}: hunk {number} (at line {hunk.old_start}) does not match the file"
            )
        end = position + len(old)
        # A hunk reaching the end of the file decides whether the file ends with a newline:
        # it says so when either side ends without one, and a new file gets one by default.
        at_end = end == len(lines)
        marked = hunk.old_ends_without_newline or hunk.new_ends_without_newline
        if at_end and (marked or not lines):
            ends_with_newline = not hunk.new_ends_without_newline
        lines[position:end] = hunk.new_lines
        offset += len(hunk.new_lines) - len(old)
    if not lines:
        return ""
    return newline.join(lines) + (newline if ends_with_newline else "")


def _locate(lines: list[str], old: list[str], expected: int) -> int | None:
    """Where `old` occurs in `lines`, nearest to `expected` first."""
    last_start = len(lines) - len(old)
    if last_start < 0:
        return None
    expected = min(max(expected, 0), last_start)
    for distance in range(last_start + 1):
        for start in (expected - distance, expected + distance):
            if 0 <= start <= last_start and lines[start : start + len(old)] == old:
                return start
    return None
