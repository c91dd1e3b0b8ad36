"""DevTeam's `workspace` MCP server: the files of one folder, and nothing outside it.

Tools: `tree`, `read_file` (line ranges, size cap), `write_file`, `apply_patch`
(a unified diff, applied whole or not at all), `search_text` (regex, glob
filters, result cap) and `python_symbols` (classes and functions, from `ast`).

Every path is relative to the root. A path that is absolute, contains `..`, or
leads out through a symlink is refused with a tool error (an `isError` result
the model can read), as is a write, patch, rename or delete of any path through
a `.git` (see `paths`), and every other anticipated failure: a missing file, a
binary file, a patch that does not fit, a bad regex.

Run it with `devteam mcp workspace --root PATH` (stdio) or add `--http --port N`
(Streamable HTTP at `/mcp`).
"""

from __future__ import annotations

import fnmatch
import functools
import io
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, BinaryIO, ParamSpec, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field

from devteam import __version__
from devteam.mcp.workspace.patch import FilePatch, PatchError, apply_hunks, parse_patch
from devteam.mcp.workspace.paths import PathRefused, WorkspaceRoot
from devteam.mcp.workspace.symbols import Symbol, python_symbols

P = ParamSpec("P")
R = TypeVar("R")

SKIPPED_DIRS = frozenset({".git", "__pycache__", "node_modules"})
"""Never listed or searched: version control internals and generated trees."""
BINARY_PROBE_BYTES = 8192
MAX_LINE_SHOWN = 300

READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
WRITES = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False
)

INSTRUCTIONS = (
    "Files of one workspace folder. Every path is relative to the workspace root; "
    "absolute paths, '..' and symlinks leading out are refused, and so are changes to .git."
)


@dataclass(frozen=True, slots=True)
class WorkspaceLimits:
    max_read_bytes: int = 256 * 1024
    """`read_file` stops after this many bytes and says where to continue."""
    max_write_bytes: int = 2 * 1024 * 1024
    max_search_results: int = 200
    max_search_file_bytes: int = 2 * 1024 * 1024
    """Larger files are skipped by `search_text`."""
    max_tree_entries: int = 2000


def _tool_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn anticipated failures into tool errors the caller can read."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (PathRefused, PatchError) as exc:
            raise ToolError(str(exc)) from exc
        except re.error as exc:
            raise ToolError(f"invalid regular expression: {exc}") from exc
        except UnicodeEncodeError as exc:
            raise ToolError(f"cannot encode the text as UTF-8: {exc.reason}") from exc
        except OSError as exc:
            tools = args[0] if args and isinstance(args[0], WorkspaceTools) else None
            raise ToolError(_os_error(exc, tools)) from exc

    return wrapper


_OS_ERRORS: list[tuple[type[OSError], str]] = [
    (FileNotFoundError, "no such file or folder"),
    (IsADirectoryError, "is a folder, not a file"),
    (NotADirectoryError, "not a folder"),
    (PermissionError, "permission denied"),
]


def _os_error(exc: OSError, tools: WorkspaceTools | None) -> str:
    problem = next((text for kind, text in _OS_ERRORS if isinstance(exc, kind)), None)
    problem = problem or exc.strerror or type(exc).__name__
    if not exc.filename:
        return problem
    # Name the file as the caller did: relative to the root, never the host path.
    name = Path(str(exc.filename))
    if tools is not None and name.is_absolute() and name.is_relative_to(tools.root.path):
        return f"{problem}: {tools.root.relative(name)}"
    return f"{problem}: {name if not name.is_absolute() else name.name}"


def _open_regular(path: Path, shown: str | None = None) -> BinaryIO:
    """Open a regular file for reading; a FIFO, device or socket is a tool error.

    Opened without blocking (a FIFO with no writer would block an ordinary open
    forever) and checked again on the open descriptor, so nothing can swap the
    file between the check and the read.
    """
    shown = shown or path.name
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise ToolError(f"{shown} is not a regular file (a FIFO, device or socket)")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ToolError(f"{shown} is not a regular file (a FIFO, device or socket)")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _is_binary(path: Path, shown: str | None = None) -> bool:
    with _open_regular(path, shown) as file:
        return b"\x00" in file.read(BINARY_PROBE_BYTES)


class WorkspaceTools:
    """The tools, as plain methods over one root (the server registers them)."""

    def __init__(self, root: WorkspaceRoot, limits: WorkspaceLimits | None = None) -> None:
        self.root = root
        self.limits = limits or WorkspaceLimits()

    @_tool_errors
    def tree(
        self,
        path: Annotated[str, Field(description="Folder relative to the workspace root.")] = ".",
        max_depth: Annotated[int, Field(ge=1, le=20, description="Levels to descend.")] = 3,
        include_hidden: Annotated[bool, Field(description="List dot-files and -folders.")] = False,
    ) -> str:
        """List the files and folders under a folder, one relative path per line.

        Folders end with '/'; symlinks are marked and not followed. `.git`,
        `__pycache__` and `node_modules` are left out.
        """
        start = self.root.resolve(path)
        if not start.is_dir():
            raise NotADirectoryError(0, "not a folder", path)
        entries: list[str] = []
        cap = self.limits.max_tree_entries
        for entry in self._walk_tree(start, max_depth, include_hidden):
            if len(entries) == cap:
                entries.append(f"[more entries not shown: the listing stops at {cap}]")
                break
            entries.append(entry)
        return "\n".join(entries) if entries else "[empty folder]"

    def _walk_tree(self, directory: Path, depth: int, include_hidden: bool) -> Iterator[str]:
        try:
            children = sorted(directory.iterdir(), key=lambda p: p.name)
        except PermissionError:
            return
        for child in children:
            if child.name in SKIPPED_DIRS or (child.name.startswith(".") and not include_hidden):
                continue
            shown = self.root.relative(child)
            if child.is_symlink():
                yield f"{shown} (symlink)"
            elif child.is_dir():
                yield f"{shown}/"
                if depth > 1:
                    yield from self._walk_tree(child, depth - 1, include_hidden)
            elif child.is_file():  # FIFOs, devices and sockets are left out
                yield shown

    @_tool_errors
    def read_file(
        self,
        path: Annotated[str, Field(description="File relative to the workspace root.")],
        start_line: Annotated[int, Field(ge=1, description="First line to read (1-based).")] = 1,
        end_line: Annotated[
            int | None, Field(ge=1, description="Last line to read (inclusive); none: to the end.")
        ] = None,
    ) -> str:
        """Read a text file, or a range of its lines.

        Long reads stop at a size cap with a note saying which line to continue from.
        """
        if end_line is not None and end_line < start_line:
            raise ToolError("end_line must not be before start_line")
        target = self.root.resolve(path)
        if target.is_dir():
            raise IsADirectoryError(0, "is a folder", path)
        if _is_binary(target, path):
            raise ToolError(f"{path} is a binary file")
        cap = self.limits.max_read_bytes
        chunks: list[str] = []
        size = 0
        number = 0
        raw = _open_regular(target, path)
        with io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="") as file:
            for number, line in enumerate(file, start=1):
                if number < start_line:
                    continue
                if end_line is not None and number > end_line:
                    break
                size += len(line.encode())
                if size > cap and chunks:
                    chunks.append(
                        f"\n[truncated after line {number - 1} ({cap} bytes): "
                        f"read on with start_line={number}]"
                    )
                    break
                chunks.append(line)
        if not chunks and number < start_line:
            return f"[{path} has {number} lines: nothing from line {start_line}]"
        return "".join(chunks)

    @_tool_errors
    def write_file(
        self,
        path: Annotated[str, Field(description="File relative to the workspace root.")],
        content: Annotated[str, Field(description="The whole new content of the file.")],
    ) -> str:
        """Create or replace a file with the given text (folders are created as needed)."""
        data = content.encode()
        if len(data) > self.limits.max_write_bytes:
            raise ToolError(
                f"content is {len(data)} bytes; the limit is {self.limits.max_write_bytes}"
            )
        target = self.root.resolve_writable(path)
        if target == self.root.path or target.is_dir():
            raise IsADirectoryError(0, "is a folder", path)
        self._write(target, data)
        return f"wrote {len(data)} bytes to {self.root.relative(target)}"

    def _write(self, target: Path, data: bytes) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        if not self.root.contains(target.parent):
            raise PathRefused(f"{self.root.relative(target)} leads outside the workspace")
        mode = target.stat().st_mode & 0o777 if target.exists() else 0o644
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
            os.chmod(temporary, mode)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    @_tool_errors
    def apply_patch(
        self,
        diff: Annotated[
            str, Field(description="A unified diff (as from `git diff`), paths relative to root.")
        ],
    ) -> str:
        """Apply a unified diff: edit, create, delete or rename files, all or none of them."""
        writes: dict[Path, bytes] = {}
        deletes: list[Path] = []
        summary: list[str] = []
        for patch in parse_patch(diff):
            summary.append(self._plan(patch, writes, deletes))
        # Every file was read and patched in memory first: nothing is written unless all fit.
        for target, data in writes.items():
            self._write(target, data)
        for target in deletes:
            if target not in writes:
                target.unlink()
        return "\n".join(summary)

    def _plan(self, patch: FilePatch, writes: dict[Path, bytes], deletes: list[Path]) -> str:
        """Patch one file in memory; note what to write and delete; describe it."""
        old = None if patch.old_path is None else self.root.resolve_writable(patch.old_path)
        new = None if patch.new_path is None else self.root.resolve_writable(patch.new_path)
        if old is None:
            if new is not None and new.exists():
                raise PatchError(f"{patch.new_path}: the patch creates it, but it exists")
            original = ""
        elif new is None and not patch.hunks:
            # A deletion without hunks (e.g. of a binary file) removes it whatever it holds.
            if not old.is_file():
                raise PatchError(f"{patch.old_path}: no such file to delete")
            deletes.append(old)
            return f"deleted {patch.old_path}"
        else:
            if not old.is_file():
                raise PatchError(f"{patch.old_path}: no such file to patch")
            if _is_binary(old):
                raise PatchError(f"{patch.old_path} is a binary file")
            with old.open(encoding="utf-8", newline="") as file:
                original = file.read()
        updated = apply_hunks(original, patch.hunks, path=patch.path)
        added = sum(op == "+" for hunk in patch.hunks for op, _ in hunk.lines)
        removed = sum(op == "-" for hunk in patch.hunks for op, _ in hunk.lines)
        if new is None:
            assert old is not None
            if updated:
                raise PatchError(f"{patch.old_path}: deleted, but the hunks leave content")
            deletes.append(old)
            return f"deleted {patch.old_path}"
        writes[new] = updated.encode()
        if old is None:
            return f"created {patch.new_path} (+{added})"
        if old != new:
            deletes.append(old)
            return f"renamed {patch.old_path} to {patch.new_path} (+{added} -{removed})"
        return f"patched {patch.new_path} (+{added} -{removed})"

    @_tool_errors
    def search_text(
        self,
        pattern: Annotated[str, Field(description="Python regular expression.")],
        path: Annotated[str, Field(description="Folder or file to search in.")] = ".",
        glob: Annotated[
            str | list[str] | None,
            Field(description="Only files matching one of these globs, e.g. ['*.py', 'src/*']."),
        ] = None,
        ignore_case: bool = False,
        max_results: Annotated[int | None, Field(ge=1, description="Stop after this many.")] = None,
    ) -> str:
        """Find lines matching a regular expression; answers `path:line: text` per match."""
        regex = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
        globs = [glob] if isinstance(glob, str) else glob or []
        cap = min(max_results or self.limits.max_search_results, self.limits.max_search_results)
        start = self.root.resolve(path)
        results: list[str] = []
        for file in self._files(start):
            shown = self.root.relative(file)
            if globs and not any(
                fnmatch.fnmatch(shown, g) or fnmatch.fnmatch(file.name, g) for g in globs
            ):
                continue
            try:
                if file.stat().st_size > self.limits.max_search_file_bytes or _is_binary(
                    file, shown
                ):
                    continue
                with _open_regular(file, shown) as raw:
                    text = raw.read().decode("utf-8", errors="replace")
            except (OSError, ToolError):
                continue
            for number, line in enumerate(text.splitlines(), start=1):
                if regex.search(line):
                    if len(results) == cap:
                        results.append(f"[more matches not shown: the search stops at {cap}]")
                        return "\n".join(results)
                    results.append(f"{shown}:{number}: {line.strip()[:MAX_LINE_SHOWN]}")
        return "\n".join(results) if results else "[no matches]"

    def _files(self, start: Path) -> Iterator[Path]:
        if start.is_file():
            yield start
            return
        if not start.is_dir():
            shown = self.root.relative(start)
            if start.exists():
                raise ToolError(f"{shown} is not a regular file (a FIFO, device or socket)")
            raise FileNotFoundError(0, "no such file or folder", shown)
        for directory, folders, files in os.walk(start, followlinks=False):
            folders[:] = sorted(
                f for f in folders if f not in SKIPPED_DIRS and not f.startswith(".")
            )
            for name in sorted(files):
                file = Path(directory, name)
                # Symlinked files are the tree's business; searching them would repeat
                # their targets or reach outside. FIFOs, devices and sockets are skipped.
                if not name.startswith(".") and not file.is_symlink() and file.is_file():
                    yield file

    @_tool_errors
    def python_symbols(
        self, path: Annotated[str, Field(description="A .py file relative to the root.")]
    ) -> list[Symbol]:
        """The classes, functions and methods of a Python file, with lines and signatures."""
        target = self.root.resolve(path)
        if target.is_dir():
            raise IsADirectoryError(0, "is a folder", path)
        with _open_regular(target, path) as raw:
            if os.fstat(raw.fileno()).st_size > self.limits.max_search_file_bytes:
                raise ToolError(f"{path} is too large to parse here")
            source = raw.read().decode("utf-8", errors="replace")
        try:
            return python_symbols(source, filename=path)
        except SyntaxError as exc:
            raise ToolError(f"{path}:{exc.lineno}: not valid Python: {exc.msg}") from exc


def create_workspace_server(
    root: Path | str, *, limits: WorkspaceLimits | None = None
) -> MCPServer:
    """The MCP server over `root` (which must be an existing folder)."""
    tools = WorkspaceTools(WorkspaceRoot(root), limits)
    server: MCPServer = MCPServer(
        "devteam-workspace", version=__version__, instructions=INSTRUCTIONS
    )
    server.add_tool(tools.tree, annotations=READ_ONLY, structured_output=False)
    server.add_tool(tools.read_file, annotations=READ_ONLY, structured_output=False)
    server.add_tool(tools.write_file, annotations=WRITES, structured_output=False)
    server.add_tool(tools.apply_patch, annotations=WRITES, structured_output=False)
    server.add_tool(tools.search_text, annotations=READ_ONLY, structured_output=False)
    server.add_tool(tools.python_symbols, annotations=READ_ONLY, structured_output=True)
    return server


async def serve_http(server: MCPServer, *, host: str, port: int) -> None:
    """Serve over Streamable HTTP at `http://host:port/mcp` until stopped."""
    import uvicorn

    config = uvicorn.Config(
        server.streamable_http_app(host=host),
        host=host,
        port=port,
        log_config=None,
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    await uvicorn.Server(config).serve()
