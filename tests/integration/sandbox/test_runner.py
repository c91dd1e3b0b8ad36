"""The sandbox with real processes under real bubblewrap: what a command cannot do."""

from __future__ import annotations

import asyncio
import os
import shlex
import uuid
from pathlib import Path

import pytest

from devteam.domain.errors import ErrorCode, SandboxUnavailable, ValidationFailed
from devteam.sandbox import (
    NO_ISOLATION_WARNING,
    TIMEOUT_EXIT_CODE,
    CommandResult,
    Sandbox,
    SandboxLimits,
)
from tests.integration.sandbox.conftest import Folders, processes_with, require_bwrap

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _bwrap() -> None:
    require_bwrap()


def sandbox(folders: Folders, **limits: float) -> Sandbox:
    return Sandbox(folders.root, SandboxLimits(**limits))  # type: ignore[arg-type]


async def run(folders: Folders, command: str, **options: object) -> CommandResult:
    return await sandbox(folders).run(command, timeout_s=30, **options)  # type: ignore[arg-type]


def grandchild(marker: str) -> str:
    """A shell snippet starting a background process whose command line holds `marker`
    (spelled so that only the expanded form, never this command's text, contains it)."""
    head, tail = marker[:8], marker[8:]
    return f'sh -c \'sleep 1000; :\' "{head}""{tail}" &'


async def wait_for_process(marker: str) -> list[int]:
    for _ in range(400):
        if pids := processes_with(marker):
            return pids
        await asyncio.sleep(0.05)
    raise AssertionError(f"no process with {marker!r} started")


async def wait_until_gone(pids: list[int]) -> None:
    for _ in range(100):
        alive = [pid for pid in pids if _alive(pid)]
        if not alive:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"processes {alive} outlived the command")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# -- what runs, and how it is reported -------------------------------------------------


async def test_runs_in_the_worktree_and_reports_exit_code(folders: Folders) -> None:
    result = await run(folders, "python3 src/main.py && pwd && exit 3")
    assert result.exit_code == 3
    assert result.output.splitlines() == ["hello from the project", str(folders.root)]
    assert (result.isolation, result.warning, result.timed_out) == ("bubblewrap", None, False)
    assert not result.truncated and not result.passed


async def test_argv_runs_without_a_shell(folders: Folders) -> None:
    result = await sandbox(folders).run(["echo", "$HOME", "a b"], cwd="src")
    assert (result.exit_code, result.output) == (0, "$HOME a b\n")
    assert result.command == "echo '$HOME' 'a b'"


async def test_a_signal_is_reported_as_128_plus_its_number(folders: Folders) -> None:
    assert (await run(folders, "kill -9 $$")).exit_code == 128 + 9


@pytest.mark.parametrize("cwd", ["..", "../service-data", "/etc", "src/../..", "missing"], ids=str)
async def test_cwd_stays_inside_the_root(folders: Folders, cwd: str) -> None:
    with pytest.raises(ValidationFailed):
        await sandbox(folders).run("true", cwd=cwd)


async def test_empty_commands_are_refused(folders: Folders) -> None:
    for command in ("", "   ", []):
        with pytest.raises(ValidationFailed, match="empty"):
            await sandbox(folders).run(command)


# -- the filesystem ------------------------------------------------------------------


async def test_writes_only_inside_the_worktree(folders: Folders) -> None:
    marker = f"devteam-sandbox-{uuid.uuid4().hex}"
    outside = folders.data / "planted"
    script = "; ".join(
        [
            "echo made > src/made.txt && echo wrote-worktree",
            f"echo x > {shlex.quote(str(outside))} || echo refused-data",
            "echo x > /usr/planted || echo refused-usr",
            "echo x > /etc/planted || echo refused-etc",
            f"echo x > /tmp/{marker} && echo wrote-private-tmp",
            f"echo x > $HOME/{marker} && echo wrote-private-home",
        ]
    )
    result = await run(folders, script)
    lines = result.output.splitlines()
    for expected in ("wrote-worktree", "refused-data", "refused-usr", "refused-etc"):
        assert expected in lines, result.output
    assert {"wrote-private-tmp", "wrote-private-home"} <= set(lines)
    assert (folders.root / "src" / "made.txt").read_text() == "made\n"
    assert not outside.exists()
    assert not Path("/usr/planted").exists() and not Path("/etc/planted").exists()
    assert not Path("/tmp", marker).exists(), "/tmp inside is private"
    assert not Path.home().joinpath(marker).exists(), "the home inside is private"


@pytest.mark.parametrize("kind", ["worktree-pointer", "repository"])
async def test_git_metadata_is_read_only(folders: Folders, kind: str) -> None:
    git = folders.root / ".git"
    if kind == "worktree-pointer":
        git.write_text("gitdir: /projects/app/.git/worktrees/task\n")
        attack = "echo 'gitdir: evil' > .git"
    else:
        (git / "hooks").mkdir(parents=True)
        (git / "config").write_text("[core]\n")
        attack = "echo '[core] fsmonitor = evil' >> .git/config; touch .git/hooks/pre-commit"
    result = await run(folders, f"{attack}; echo ran")
    assert "Read-only file system" in result.output and "ran" in result.output
    if kind == "worktree-pointer":
        assert git.read_text() == "gitdir: /projects/app/.git/worktrees/task\n"
    else:
        assert (git / "config").read_text() == "[core]\n"
        assert not (git / "hooks" / "pre-commit").exists()
    moved = await run(folders, "mv .git moved || rm -rf .git || echo kept")
    assert "kept" in moved.output and git.exists()


async def test_etc_shadow_is_unreadable(folders: Folders) -> None:
    shadow = Path("/etc/shadow")
    if not shadow.exists():
        pytest.skip("this system has no /etc/shadow")
    result = await run(folders, "cat /etc/shadow")
    assert result.exit_code != 0
    assert "Permission denied" in result.output
    assert "root:" not in result.output
    if os.geteuid() == 0:
        assert "root:" in shadow.read_text(), "the service itself can read it"


async def test_extra_read_only_folders_keep_their_private_files(
    folders: Folders, tmp_path: Path
) -> None:
    toolchain = tmp_path / "toolchain"
    (toolchain / "keys").mkdir(parents=True)
    (toolchain / "bin.txt").write_text("public\n")
    (toolchain / "license.key").write_text("private\n")
    (toolchain / "license.key").chmod(0o600)
    (toolchain / "keys" / "a.pem").write_text("private\n")
    (toolchain / "keys").chmod(0o700)
    extended = Sandbox(folders.root, SandboxLimits(), read_only_paths=[str(toolchain)])
    result = await extended.run(
        f"cd {shlex.quote(str(toolchain))}; cat bin.txt license.key keys/a.pem; touch new"
    )
    assert result.output.count("public") == 1 and "private" not in result.output
    assert "Read-only file system" in result.output
    assert not (toolchain / "new").exists()


async def test_the_services_files_are_not_there(folders: Folders) -> None:
    repository = Path(__file__).resolve().parents[3]
    paths = [folders.secret, folders.data, repository / "pyproject.toml", Path.home(), "/root"]
    script = "; ".join(f"test -e {shlex.quote(str(p))} && echo visible: {p}" for p in paths)
    result = await run(folders, script + "; ls /; ls " + shlex.quote(str(folders.root.parent)))
    assert "visible" not in result.output, result.output
    top = set(result.output.split())
    assert top >= {"usr", "etc", "tmp", "proc", "dev", "worktree"}
    assert not top & {"root", "srv", "work", "service-data"}, result.output


async def test_no_user_namespace_can_be_created_inside(folders: Folders) -> None:
    result = await run(folders, "unshare --user --map-root-user id -u || echo refused")
    assert result.output.splitlines()[-1] == "refused", result.output


async def test_host_processes_are_not_visible(folders: Folders) -> None:
    result = await run(folders, "ls /proc | grep -c '^[0-9]'")
    assert int(result.output) <= 5, "only the sandbox's own processes"


# -- the environment ------------------------------------------------------------------


async def test_environment_is_built_from_scratch(
    folders: Folders, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVTEAM_JWT_SECRET", "jwt-secret-value-0123456789abcdef")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-provider-key")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_token")
    result = await sandbox(folders).run("env", env={"PROJECT_MODE": "check"})
    variables = dict(line.split("=", 1) for line in result.output.splitlines())
    assert set(variables) <= {"PATH", "HOME", "TMPDIR", "LANG", "TERM", "PWD", "PROJECT_MODE"}
    assert variables["TERM"] == "dumb" and variables["PROJECT_MODE"] == "check"
    for leaked in ("jwt-secret-value", "sk-test-provider-key", "ghp_token"):
        assert leaked not in result.output


async def test_bad_variable_names_are_refused(folders: Folders) -> None:
    with pytest.raises(ValidationFailed, match="not valid"):
        await sandbox(folders).run("env", env={"A=B": "c"})


# -- the network -----------------------------------------------------------------------

CONNECT = (
    "python3 -c \"import socket, sys; socket.create_connection(('127.0.0.1', {port}), 3); "
    "print('connected')\""
)


async def test_no_network_not_even_loopback(folders: Folders) -> None:
    connections: list[bool] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(True)
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        refused = await run(folders, CONNECT.format(port=port))
        assert refused.exit_code != 0 and "connected" not in refused.output
        assert connections == []
        # The same command with the network on does connect: the test can fail.
        allowed = await run(folders, CONNECT.format(port=port), network=True)
        assert "connected" in allowed.output, allowed.output
        assert connections == [True]


# -- limits ---------------------------------------------------------------------------


async def test_a_fork_bomb_is_contained(folders: Folders) -> None:
    bomb = "n=0; while [ $n -lt 2000 ]; do sleep 30 & n=$((n+1)); done; echo started $n"
    result = await sandbox(folders, max_processes=32).run(bomb, timeout_s=40)
    assert not result.timed_out, "the process limit stopped it, not the timeout"
    assert result.duration_s < 20
    assert "started 2000" not in result.output
    assert "fork" in result.output.lower(), result.output


async def test_timeout_kills_the_whole_tree(folders: Folders) -> None:
    marker = f"sandboxed-{uuid.uuid4().hex}"
    command = f"{grandchild(marker)} sleep 1000"
    task = asyncio.create_task(sandbox(folders).run(command, timeout_s=3))
    pids = await wait_for_process(marker)
    result = await task
    assert result.timed_out and result.exit_code == TIMEOUT_EXIT_CODE
    assert "ran past its timeout of 3 s" in result.output
    assert 3 <= result.duration_s < 15
    await wait_until_gone(pids)


async def test_a_command_leaves_nothing_running(folders: Folders) -> None:
    marker = f"sandboxed-{uuid.uuid4().hex}"
    result = await run(folders, f"{grandchild(marker)} echo done")
    assert result.output == "done\n" and not result.timed_out
    await wait_until_gone(processes_with(marker))
    assert processes_with(marker) == []


async def test_cancelling_the_run_kills_the_tree(folders: Folders) -> None:
    marker = f"sandboxed-{uuid.uuid4().hex}"
    task = asyncio.create_task(sandbox(folders).run(f"{grandchild(marker)} sleep 1000"))
    pids = await wait_for_process(marker)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until_gone(pids)


async def test_output_is_capped_keeping_start_and_end(folders: Folders) -> None:
    command = "echo first; yes middle | head -n 100000; echo last"
    result = await sandbox(folders, output_bytes=4000).run(command)
    assert result.truncated and result.exit_code == 0
    assert result.output.startswith("first\n")
    assert result.output.endswith("last\n")
    assert "bytes of output left out" in result.output
    assert len(result.output.encode()) < 4200


async def test_memory_is_capped(folders: Folders) -> None:
    allocate = "python3 -c 'x = bytearray({mib} * 1024 * 1024); print(\"allocated\")'"
    limited = sandbox(folders, memory_mb=256)
    small = await limited.run(allocate.format(mib=32))
    assert small.output == "allocated\n", small.output
    large = await limited.run(allocate.format(mib=512))
    assert large.exit_code != 0 and "MemoryError" in large.output


async def test_cpu_time_is_capped(folders: Folders) -> None:
    result = await sandbox(folders, cpu_s=1).run("while :; do :; done", timeout_s=50)
    assert not result.timed_out
    assert result.exit_code in (128 + 24, 128 + 9), "SIGXCPU, then SIGKILL at the hard limit"


async def test_file_size_is_capped(folders: Folders) -> None:
    result = await sandbox(folders, file_size_mb=1).run("head -c 3000000 /dev/zero > big.bin")
    assert result.exit_code != 0
    assert (folders.root / "big.bin").stat().st_size <= 1024 * 1024


# -- without bubblewrap ----------------------------------------------------------------


async def test_missing_bwrap_is_sandbox_unavailable(folders: Folders) -> None:
    missing = Sandbox(folders.root, SandboxLimits(), bwrap_path="/nonexistent/bin/bwrap")
    with pytest.raises(SandboxUnavailable) as raised:
        await missing.run("true")
    assert raised.value.code == ErrorCode.SANDBOX_UNAVAILABLE == "sandbox_unavailable"
    assert "isolation: none" in raised.value.message


async def test_unusable_bwrap_is_sandbox_unavailable(folders: Folders, tmp_path: Path) -> None:
    broken = tmp_path / "bwrap"
    broken.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace'\nexit 1\n")
    broken.chmod(0o755)
    with pytest.raises(SandboxUnavailable, match="cannot create a sandbox here: bwrap: No perm"):
        await Sandbox(folders.root, SandboxLimits(), bwrap_path=str(broken)).run("true")


async def test_without_isolation_every_result_warns(
    folders: Folders, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVTEAM_JWT_SECRET", "jwt-secret-value-0123456789abcdef")
    plain = Sandbox(
        folders.root,
        SandboxLimits(output_bytes=2000),
        isolation="none",
        bwrap_path="/nonexistent/bin/bwrap",
    )
    result = await plain.run("env; yes | head -n 5000")
    assert (result.isolation, result.warning) == ("none", NO_ISOLATION_WARNING)
    assert "jwt-secret-value" not in result.output, "the environment is still clean"
    assert result.truncated
    marker = f"unsandboxed-{uuid.uuid4().hex}"
    timed = await plain.run(f"{grandchild(marker)} sleep 1000", timeout_s=2)
    assert timed.timed_out and timed.warning == NO_ISOLATION_WARNING
    await wait_until_gone(processes_with(marker))
