"""Run a command inside one folder, isolated from the rest of the machine.

`Sandbox(root, limits).run(command)` runs the command under bubblewrap:

- the root (a project's worktree) is the only writable path, mounted at its own
  path, with its `.git` read-only; /usr, /etc and /opt (and the operator's
  `read_only_paths`) are visible read-only, with every file there that others
  may not read (/etc/shadow, keys, …) replaced by an empty one; nothing else of
  the host is there (no /root, /home, /run, /var, /srv, no other worktree, none
  of the service's files);
- a private /tmp and home, a /proc of its own pid namespace, a minimal /dev;
- new namespaces of every kind, so no network unless asked for (not even the
  host's loopback), no view of the host's processes, no nested user namespace;
  a new session (no terminal);
- limits on each process: CPU time, address space, file size and the number of
  processes (RLIMIT_NPROC, counted per user namespace, so per sandbox; commands
  run as `nobody`, and as the host's `nobody` when the service is root, whom the
  process limit would not bind);
- an environment built from scratch: PATH, HOME, TMPDIR, LANG, TERM=dumb and
  whatever the caller passes, never the service's own variables.

The whole process tree is killed when the command runs past its timeout, when
the caller's `run` is cancelled, and when the calling process dies (bwrap's
`--die-with-parent`; the sandbox's pid namespace dies with its first process).
A command that ends leaves nothing running either.

With `isolation="none"` (operator's choice: `sandbox.isolation: none`) commands
run directly, in their own session, with the same environment and limits but no
isolation; every result then carries a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import shlex
import shutil
import signal
import stat
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from devteam.domain.errors import SandboxUnavailable, ValidationFailed
from devteam.settings.verification import SandboxConfig

log = logging.getLogger(__name__)

Isolation = Literal["bubblewrap", "none"]

TIMEOUT_EXIT_CODE = 124
"""`exit_code` of a command killed at its timeout (as coreutils' `timeout` reports it)."""
SIGNAL_EXIT_BASE = 128
"""A command killed by signal N reports 128 + N (as shells and bwrap report it)."""

NO_ISOLATION_WARNING = (
    "commands run without isolation (sandbox.isolation: none): they can read and write "
    "whatever the service can, and reach the network"
)

SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SANDBOX_HOME = "/home/sandbox"
SANDBOX_UID = 65534
"""The user commands run as inside the sandbox (`nobody`)."""
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")
"""Host paths visible read-only in the sandbox (those that exist)."""
_ENV_NAME = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_READ_CHUNK = 64 * 1024
_REAP_GRACE_S = 5.0


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 300.0
    """Wall-clock seconds; past them the whole process tree is killed."""
    cpu_s: int = 600
    """CPU seconds of each process (RLIMIT_CPU)."""
    memory_mb: int = 2048
    """Address space of each process (RLIMIT_AS)."""
    max_processes: int = 256
    """Processes at once in one sandbox (RLIMIT_NPROC)."""
    output_bytes: int = 1_000_000
    """Combined stdout and stderr kept: the first quarter and the last three quarters."""
    file_size_mb: int = 1024
    """Largest file a process may write (RLIMIT_FSIZE)."""


@dataclass(frozen=True)
class CommandResult:
    command: str
    """As shown to users: the shell string, or `shlex.join(argv)`."""
    exit_code: int
    """The command's exit status; 128 + N when a signal N killed it (e.g. 137 for
    SIGKILL, 152 for SIGXCPU past the CPU limit); 124 when it ran past its timeout."""
    output: str
    """stdout and stderr as they interleaved, capped (see `truncated`)."""
    truncated: bool
    """Part of the output was left out; a marker line in `output` says how much."""
    timed_out: bool
    duration_s: float
    isolation: str
    """`bubblewrap` or `none`."""
    warning: str | None
    """Set when the command ran without isolation."""

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


class Sandbox:
    """Commands in one root folder, isolated and limited."""

    def __init__(
        self,
        root: Path,
        limits: SandboxLimits,
        *,
        isolation: str = "bubblewrap",
        bwrap_path: str = "bwrap",
        read_only_paths: Sequence[str] = (),
    ) -> None:
        if isolation not in ("bubblewrap", "none"):
            raise ValueError(f"isolation must be 'bubblewrap' or 'none', not {isolation!r}")
        resolved = Path(root).expanduser().resolve()
        if not resolved.is_dir():
            raise NotADirectoryError(f"sandbox root is not a folder: {root}")
        self.root = resolved
        self.limits = limits
        self.isolation: Isolation = "bubblewrap" if isolation == "bubblewrap" else "none"
        self.bwrap_path = bwrap_path
        self.read_only_paths = tuple(read_only_paths)

    @classmethod
    def from_config(cls, root: Path, config: SandboxConfig) -> Sandbox:
        """A sandbox over `root` with the isolation and limits of `sandbox:` in the config."""
        limits = SandboxLimits(
            timeout_s=config.timeout_s,
            cpu_s=config.cpu_s,
            memory_mb=config.memory_mb,
            max_processes=config.max_processes,
            output_bytes=config.output_bytes,
            file_size_mb=config.file_size_mb,
        )
        return cls(
            root,
            limits,
            isolation=config.isolation,
            bwrap_path=config.bwrap_path,
            read_only_paths=config.read_only_paths,
        )

    def with_limits(self, limits: SandboxLimits) -> Sandbox:
        """The same sandbox with other limits."""
        return Sandbox(
            self.root,
            limits,
            isolation=self.isolation,
            bwrap_path=self.bwrap_path,
            read_only_paths=self.read_only_paths,
        )

    async def run(
        self,
        command: str | Sequence[str],
        *,
        cwd: str = ".",
        timeout_s: float | None = None,
        network: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        """Run `command` (a shell string, or an argv list) in `cwd`, relative to the root.

        Raises `SandboxUnavailable` when isolation is on and bubblewrap cannot run,
        `ValidationFailed` for an empty command, a `cwd` outside the root or a bad
        variable name. Everything the command itself does, including failing,
        timing out and being killed, is in the result.
        """
        argv, shown = _argv(command)
        workdir = self._workdir(cwd)
        extra = _extra_env(env)
        timeout = self.limits.timeout_s if timeout_s is None else timeout_s
        if timeout <= 0:
            raise ValidationFailed("timeout_s must be positive")
        if self.isolation == "bubblewrap":
            bwrap = await _usable_bwrap(self.bwrap_path)
            if bwrap not in _probed:
                await self._probe(bwrap)
            return await self._run_bwrap(bwrap, argv, shown, workdir, timeout, network, extra)
        return await self._run_unisolated(argv, shown, workdir, timeout, extra)

    def _workdir(self, cwd: str) -> Path:
        if "\x00" in cwd:
            raise ValidationFailed("cwd cannot contain NUL characters")
        pure = PurePosixPath(cwd.strip() or ".")
        if pure.is_absolute() or ".." in pure.parts:
            raise ValidationFailed(f"cwd {cwd!r}: use a folder relative to the root, without '..'")
        resolved = (self.root / pure).resolve()
        if not resolved.is_relative_to(self.root):
            raise ValidationFailed(f"cwd {cwd!r} leads outside the root")
        if not resolved.is_dir():
            raise ValidationFailed(f"cwd {cwd!r} is not a folder")
        return resolved

    # -- bubblewrap --------------------------------------------------------------

    def _bwrap_argv(
        self, bwrap: str, argv: list[str], workdir: Path, network: bool, userns_fd: int | None
    ) -> list[str]:
        if userns_fd is None:
            # The service is an ordinary user: bwrap maps it to `nobody` in a user
            # namespace of its own, where RLIMIT_NPROC counts the sandbox's processes.
            identity = ["--unshare-all", "--unshare-user", "--disable-userns"]
            identity += ["--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]
            identity += ["--share-net"] if network else []
            become: list[str] = []
        else:
            # The service is root, which RLIMIT_NPROC never binds: the command runs as
            # the host's `nobody`, in a user namespace mapping root and nobody, with one
            # capability (overriding file permissions) so it can write the worktree.
            identity = ["--userns", str(userns_fd)]
            kinds = ("ipc", "pid", "uts") if network else ("ipc", "pid", "net", "uts")
            identity += [f"--unshare-{kind}" for kind in kinds]
            identity += ["--unshare-cgroup-try"]
            identity += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
            identity += ["--cap-add", "CAP_DAC_OVERRIDE"]
            become = [
                "setpriv",
                f"--reuid={SANDBOX_UID}",
                f"--regid={SANDBOX_UID}",
                "--clear-groups",
                "--inh-caps=-all,+dac_override",
                "--ambient-caps=-all,+dac_override",
                "--bounding-set=-all,+dac_override",
                "--",
            ]
        args = [bwrap, *identity, "--die-with-parent", "--new-session", "--hostname", "sandbox"]
        for path in SYSTEM_PATHS:
            args += _mount_read_only(path)
        args += [
            "--dev", "/dev",
            "--proc", "/proc",
            "--tmpfs", "/tmp",
            "--tmpfs", "/var/tmp",
            "--tmpfs", SANDBOX_HOME,
        ]  # fmt: skip
        # Mounted in order: the operator's folders may lie under /tmp; the masks cover
        # files of every read-only folder; the worktree and its .git come last.
        for path in self.read_only_paths:
            args += _mount_read_only(path)
        args += _private_file_mounts((*PRIVATE_FILES_UNDER, *self.read_only_paths))
        if network:
            args += _resolver_mounts()
        args += [
            "--bind", str(self.root), str(self.root),
            *_protect_git_metadata(self.root),
            "--chdir", str(workdir),
            "--",
            *become,
            *_limits_prefix(self.limits),
            *argv,
        ]  # fmt: skip
        return args

    async def _run_bwrap(
        self,
        bwrap: str,
        argv: list[str],
        shown: str,
        workdir: Path,
        timeout: float,
        network: bool,
        extra: dict[str, str],
    ) -> CommandResult:
        environment = _base_env(home=SANDBOX_HOME, tmpdir="/tmp") | extra
        userns_fd = await _unprivileged_userns() if os.geteuid() == 0 else None
        try:
            started = time.monotonic()
            # bwrap's --die-with-parent ties the sandbox to the thread that starts it: run()
            # is a coroutine, so that is the event loop's thread, which lives as long as we do.
            process = await asyncio.create_subprocess_exec(
                *self._bwrap_argv(bwrap, argv, workdir, network, userns_fd),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=environment,
                cwd="/",
                start_new_session=True,
                pass_fds=() if userns_fd is None else (userns_fd,),
            )
        finally:
            if userns_fd is not None:
                os.close(userns_fd)
        return await self._collect(process, shown, timeout, started, warning=None)

    async def _probe(self, bwrap: str) -> None:
        """Create one sandbox running `true`: bwrap may be there yet unable to work
        (user namespaces turned off, a seccomp policy refusing mounts)."""
        result = await self._run_bwrap(bwrap, ["true"], "true", self.root, 30, False, {})
        if result.exit_code != 0:
            reason = result.output.strip() or f"exit code {result.exit_code}"
            raise SandboxUnavailable(
                f"bubblewrap ({bwrap}) cannot create a sandbox here: {reason}; allow "
                "unprivileged user namespaces, or set sandbox.isolation: none in "
                "config/verification.yaml to run commands without isolation"
            )
        _probed.add(bwrap)

    # -- no isolation (the operator's choice) -----------------------------------

    async def _run_unisolated(
        self,
        argv: list[str],
        shown: str,
        workdir: Path,
        timeout: float,
        extra: dict[str, str],
    ) -> CommandResult:
        log.warning("sandbox: %s", NO_ISOLATION_WARNING)
        with tempfile.TemporaryDirectory(prefix="devteam-sandbox-") as private:
            home = Path(private, "home")
            home.mkdir()
            environment = _base_env(home=str(home), tmpdir=private) | extra
            limits = self.limits
            started = time.monotonic()
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=environment,
                cwd=workdir,
                start_new_session=True,
                preexec_fn=lambda: _apply_limits(limits),
            )
            return await self._collect(
                process, shown, timeout, started, warning=NO_ISOLATION_WARNING
            )

    # -- shared ------------------------------------------------------------------

    async def _collect(
        self,
        process: asyncio.subprocess.Process,
        shown: str,
        timeout: float,
        started: float,
        *,
        warning: str | None,
    ) -> CommandResult:
        assert process.stdout is not None
        output = _CappedOutput(self.limits.output_bytes)
        reader = asyncio.create_task(output.drain(process.stdout))
        timed_out = False
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            timed_out = True
        except BaseException:
            # The caller went away (cancelled): nothing of the command outlives it.
            _kill_tree(process)
            reader.cancel()
            raise
        # Timed out or done: whatever the command left running goes too.
        _kill_tree(process)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), _REAP_GRACE_S)
        try:
            await asyncio.wait_for(reader, _REAP_GRACE_S)
        except TimeoutError:
            output.note("[output stopped: the command's output stream did not close]")
        returncode = process.returncode if process.returncode is not None else -signal.SIGKILL
        exit_code = TIMEOUT_EXIT_CODE if timed_out else _exit_code(returncode)
        if timed_out:
            output.note(f"[killed: the command ran past its timeout of {timeout:g} s]")
        text, truncated = output.text()
        return CommandResult(
            command=shown,
            exit_code=exit_code,
            output=text,
            truncated=truncated,
            timed_out=timed_out,
            duration_s=round(time.monotonic() - started, 3),
            isolation=self.isolation,
            warning=warning,
        )


class _CappedOutput:
    """Keeps the first quarter and the last three quarters of at most `cap` bytes."""

    def __init__(self, cap: int) -> None:
        self.head_cap = cap // 4
        self.tail_cap = cap - self.head_cap
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0
        self.notes: list[str] = []

    async def drain(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(_READ_CHUNK):
            self.add(chunk)

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.head_cap - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            # Trimmed once it holds twice its share, so a flood costs linear time.
            if len(self.tail) > 2 * self.tail_cap:
                del self.tail[: len(self.tail) - self.tail_cap]

    def note(self, line: str) -> None:
        self.notes.append(line)

    def text(self) -> tuple[str, bool]:
        del self.tail[: max(0, len(self.tail) - self.tail_cap)]
        omitted = self.total - len(self.head) - len(self.tail)
        parts = [self.head.decode("utf-8", "replace")]
        if omitted > 0:
            parts.append(f"\n[... {omitted} bytes of output left out ...]\n")
        parts.append(self.tail.decode("utf-8", "replace"))
        text = "".join(parts)
        if self.notes:
            text += ("" if not text or text.endswith("\n") else "\n") + "\n".join(self.notes)
        return text, omitted > 0


def _argv(command: str | Sequence[str]) -> tuple[list[str], str]:
    if isinstance(command, str):
        if not command.strip():
            raise ValidationFailed("the command is empty")
        if "\x00" in command:
            raise ValidationFailed("the command cannot contain NUL characters")
        return ["/bin/sh", "-c", command], command
    argv = list(command)
    if not argv or not argv[0]:
        raise ValidationFailed("the command is empty")
    for part in argv:
        if not isinstance(part, str) or "\x00" in part:
            raise ValidationFailed("every argument must be a string without NUL characters")
    return argv, shlex.join(argv)


def _extra_env(env: Mapping[str, str] | None) -> dict[str, str]:
    extra: dict[str, str] = {}
    for name, value in (env or {}).items():
        if not name or not set(name) <= _ENV_NAME or name[0].isdigit():
            raise ValidationFailed(f"environment variable name {name!r} is not valid")
        if not isinstance(value, str) or "\x00" in value:
            raise ValidationFailed(f"environment variable {name}: the value must be a string")
        extra[name] = value
    return extra


def _base_env(*, home: str, tmpdir: str) -> dict[str, str]:
    """The whole environment of a command: nothing is inherited from the service."""
    return {
        "PATH": SANDBOX_PATH,
        "HOME": home,
        "TMPDIR": tmpdir,
        "LANG": "C.UTF-8",
        "TERM": "dumb",
    }


_USERNS_HOLDER = (
    "import ctypes, sys\n"
    "if ctypes.CDLL(None, use_errno=True).unshare(0x10000000) != 0:\n"  # CLONE_NEWUSER
    "    sys.exit(f'unshare: errno {ctypes.get_errno()}')\n"
    "sys.stdout.write('ready'); sys.stdout.flush(); sys.stdin.readline()\n"
    # Mapped now: no user namespace may be created inside this one.
    "open('/proc/sys/user/max_user_namespaces', 'w').write('0')\n"
    "sys.stdout.write('mapped'); sys.stdout.flush(); sys.stdin.read()\n"
)


async def _unprivileged_userns() -> int:
    """A file descriptor of a new user namespace mapping root and nobody to themselves.

    Only root can map more than its own uid; a helper process creates the
    namespace, root writes its maps, the helper forbids nested user namespaces
    in it, and the open descriptor keeps it alive after the helper is gone.
    """
    helper = await asyncio.create_subprocess_exec(
        sys.executable, "-S", "-c", _USERNS_HOLDER,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": SANDBOX_PATH},
    )  # fmt: skip
    assert helper.stdin is not None and helper.stdout is not None
    try:
        await _expect(helper, b"ready")
        mapping = f"0 0 1\n{SANDBOX_UID} {SANDBOX_UID} 1\n"
        try:
            Path(f"/proc/{helper.pid}/uid_map").write_text(mapping)
            Path(f"/proc/{helper.pid}/gid_map").write_text(mapping)
        except OSError as exc:
            raise SandboxUnavailable(f"cannot map the sandbox's user: {exc}") from None
        helper.stdin.write(b"go\n")
        await helper.stdin.drain()
        await _expect(helper, b"mapped")
        return os.open(f"/proc/{helper.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        helper.stdin.close()
        with contextlib.suppress(ProcessLookupError):
            helper.kill()
        await helper.wait()


async def _expect(helper: asyncio.subprocess.Process, word: bytes) -> None:
    assert helper.stdout is not None and helper.stderr is not None
    try:
        answer = await asyncio.wait_for(helper.stdout.readexactly(len(word)), 30)
    except (asyncio.IncompleteReadError, TimeoutError):
        answer = b""
    if answer != word:
        problem = (await helper.stderr.read()).decode("utf-8", "replace").strip()
        raise SandboxUnavailable(f"cannot create a user namespace: {problem or 'no answer'}")


def _limits_prefix(limits: SandboxLimits) -> list[str]:
    """`prlimit` setting every limit, then exec'ing the command (no extra process)."""
    return [
        "prlimit",
        f"--cpu={limits.cpu_s}:{limits.cpu_s + 5}",
        f"--as={limits.memory_mb * 1024 * 1024}",
        f"--nproc={limits.max_processes}",
        f"--fsize={limits.file_size_mb * 1024 * 1024}",
        "--core=0",
        "--",
    ]


def _apply_limits(limits: SandboxLimits) -> None:
    """The same limits, set in the child before exec (no isolation)."""
    cpu = limits.cpu_s
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    memory = limits.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_processes, limits.max_processes))
    size = limits.file_size_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _exit_code(returncode: int) -> int:
    return SIGNAL_EXIT_BASE - returncode if returncode < 0 else returncode


def _kill_tree(process: asyncio.subprocess.Process) -> None:
    """Kill the command's whole process group (its session) with SIGKILL.

    Under bubblewrap, killing bwrap kills the sandbox's first process (its
    parent-death signal), and with it everything in the sandbox's pid namespace.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()


def _mount_read_only(path: str) -> list[str]:
    host = Path(path)
    if host.is_symlink():
        return ["--symlink", os.readlink(host), path]
    if host.exists():
        return ["--ro-bind", path, path]
    return []


def _protect_git_metadata(root: Path) -> list[str]:
    """`.git` read-only: DevTeam runs git in the worktree outside the sandbox, and a
    command rewriting `.git` (its config, hooks, or the worktree's `gitdir:` pointer)
    would otherwise choose what git executes there."""
    git = root / ".git"
    if git.is_symlink() or not git.exists():
        return []
    return ["--ro-bind", str(git), str(git)]


PRIVATE_FILES_UNDER = ("/etc", "/opt")
"""Visible folders searched for files others may not read (/usr holds none)."""
_PRIVATE_FILES_TTL_S = 60.0
_private_files: dict[str, tuple[float, list[str]]] = {}


def _private_file_mounts(tops: Sequence[str]) -> list[str]:
    """`_hide_private_files` of each of `tops`, each one searched again after a minute."""
    mounts: list[str] = []
    now = time.monotonic()
    for top in tops:
        cached = _private_files.get(top)
        if cached is None or now - cached[0] > _PRIVATE_FILES_TTL_S:
            cached = _private_files[top] = (now, _hide_private_files(top))
        mounts += cached[1]
    return mounts


def _hide_private_files(top: str) -> list[str]:
    """Mounts that cover what others may not read under `top` (e.g. /etc/shadow, ssh keys).

    Inside the sandbox the command's user maps to the service's own, or may
    override permissions on root's files (see `_bwrap_argv`): permissions alone
    would not keep root-only files from it.
    """
    if not os.path.isdir(top) or os.path.islink(top):
        return []
    mounts: list[str] = []
    for folder, dirs, files in os.walk(top):
        for name in list(dirs):
            path = os.path.join(folder, name)
            if not os.path.islink(path) and not _others_may_read(path, directory=True):
                mounts += ["--tmpfs", path]
                dirs.remove(name)
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path) and not _others_may_read(path, directory=False):
                mounts += ["--ro-bind", "/dev/null", path]
    return mounts


def _others_may_read(path: str, *, directory: bool) -> bool:
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return True
    if directory:
        return bool(mode & stat.S_IROTH and mode & stat.S_IXOTH)
    return not stat.S_ISREG(mode) or bool(mode & stat.S_IROTH)


def _resolver_mounts() -> list[str]:
    """With the network on, /etc/resolv.conf may point into /run (systemd-resolved)."""
    target = Path("/etc/resolv.conf").resolve()
    if target.is_relative_to("/etc") or not target.exists():
        return []
    return ["--ro-bind", str(target), str(target)]


_probed: set[str] = set()
"""bwrap programs known to create a sandbox here (each is tried once per process)."""


async def _usable_bwrap(configured: str) -> str:
    """The path of the bubblewrap program, or `SandboxUnavailable`."""
    found = shutil.which(configured)
    if found is None:
        raise SandboxUnavailable(
            f"bubblewrap was not found ({configured!r}): install it (the bubblewrap "
            "package), or set sandbox.isolation: none in config/verification.yaml to run "
            "commands without isolation"
        )
    for tool in ("prlimit", "setpriv") if os.geteuid() == 0 else ("prlimit",):
        if shutil.which(tool, path=SANDBOX_PATH) is None:
            raise SandboxUnavailable(
                f"{tool} (util-linux) was not found: the sandbox needs it to set its limits"
            )
    return found
