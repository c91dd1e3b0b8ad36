"""Unified diffs: parsing and applying in memory."""

from __future__ import annotations

import difflib

import pytest

from devteam.mcp.workspace.patch import PatchError, apply_hunks, parse_patch


def udiff(old: str, new: str, path: str = "f.py") -> str:
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{path}", f"b/{path}"
    )
    return "".join(lines)


def apply(old: str, diff: str) -> str:
    (patch,) = parse_patch(diff)
    return apply_hunks(old, patch.hunks, path=patch.path)


OLD = "".join(f"line {n}\n" for n in range(1, 21))


@pytest.mark.parametrize(
    "new",
    [
        OLD.replace("line 5\n", "line five\n"),
        OLD.replace("line 1\n", ""),
        OLD + "line 21\n",
        "first\n" + OLD,
        OLD.replace("line 3\n", "").replace("line 17\n", "seventeen\nand more\n"),
        "",
    ],
    ids=["change", "delete-first", "append", "prepend", "two-hunks", "empty"],
)
def test_applies_what_difflib_produces(new: str) -> None:
    assert apply(OLD, udiff(OLD, new)) == new


def test_finds_a_hunk_that_moved() -> None:
    diff = udiff(OLD, OLD.replace("line 15\n", "fifteen\n"))
    shifted = "new a\nnew b\nnew c\n" + OLD
    assert apply(shifted, diff) == shifted.replace("line 15\n", "fifteen\n")


def test_a_hunk_that_does_not_match_is_refused() -> None:
    diff = udiff(OLD, OLD.replace("line 5\n", "five\n"))
    with pytest.raises(PatchError, match=r"f.py: hunk 1 \(at line 2\) does not match"):
        apply(OLD.replace("line 4\n", "changed\n"), diff)


def test_no_newline_at_end_of_file() -> None:
    add = "--- a/f\n+++ b/f\n@@ -1,2 +1,3 @@\n a\n b\n+c\n\\ No newline at end of file\n"
    assert apply("a\nb\n", add) == "a\nb\nc"
    end = "--- a/f\n+++ b/f\n@@ -1,3 +1,3 @@\n a\n b\n-c\n\\ No newline at end of file\n+c\n"
    assert apply("a\nb\nc", end) == "a\nb\nc\n"


def test_keeps_crlf_line_endings() -> None:
    diff = "--- a/f.txt\n+++ b/f.txt\n@@ -1,2 +1,2 @@\n a\n-b\n+B\n"
    assert apply("a\r\nb\r\n", diff) == "a\r\nB\r\n"


def test_new_and_deleted_files() -> None:
    created, deleted = parse_patch(
        "--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1,2 @@\n+one\n+two\n"
        "--- a/old.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-gone\n"
    )
    assert (created.old_path, created.new_path) == (None, "new.txt")
    assert apply_hunks("", created.hunks, path="new.txt") == "one\ntwo\n"
    assert (deleted.old_path, deleted.new_path) == ("old.txt", None)
    assert apply_hunks("gone\n", deleted.hunks, path="old.txt") == ""


def test_git_headers_and_timestamps_are_understood() -> None:
    text = (
        "diff --git a/src/x.py b/src/x.py\nindex 83db48f..bf269f4 100644\n"
        "--- a/src/x.py\t2024-01-01 00:00:00\n+++ b/src/x.py\t2024-01-02 00:00:00\n"
        "@@ -1 +1 @@ def f():\n-old\n+new\n"
    )
    (patch,) = parse_patch(text)
    assert patch.path == "src/x.py"
    assert apply_hunks("old\n", patch.hunks, path=patch.path) == "new\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("just some text\n", "no file sections found"),
        ("--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n", "expected 2 old and 2 new lines"),
        ("--- a/f\n+++ b/f\n@@ bad @@\n", "malformed hunk header"),
        ("--- a/f\n+++ b/f\n@@ -1 +1 @@\n?x\n", "unexpected line in a hunk"),
        ("--- /dev/null\n+++ /dev/null\n", "both sides of a file header are /dev/null"),
        ("--- a/f\n+++ b/f\n", "the file section has no hunks"),
    ],
    ids=["no-sections", "short-hunk", "bad-header", "bad-line", "null-both", "no-hunks"],
)
def test_malformed_diffs_are_refused(text: str, message: str) -> None:
    with pytest.raises(PatchError, match=message):
        parse_patch(text)
