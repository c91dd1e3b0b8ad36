"""The Engine is the only code that writes task rows.

Every status change and every creation runs through the rules; a write of a
task row anywhere else would go around them. This reads the source of every
module and finds the calls that write task rows.
"""

from __future__ import annotations

import ast
from pathlib import Path

import devteam

SRC = Path(devteam.__file__).parent

TASK_WRITES = {
    ("tasks", "insert_many"),
    ("tasks", "write_changes"),
    ("tasks", "renew_leases"),
    ("events", "insert_root"),
    ("events", "insert_roots"),
    ("events", "append_many"),
    ("events", "append"),
}
"""Repository calls that write task rows (`events.append*` moves a root's event counter)."""

WRITERS = {"orchestration/engine.py"}

STORAGE_OWN = {
    "storage/repositories/tasks.py",
    "storage/repositories/events.py",
    # Deletes finished trees older than the retention period: history, not state.
    "storage/retention.py",
}
"""Storage modules that build statements on the tasks table themselves."""


def _modules() -> list[tuple[str, ast.Module]]:
    return [
        (str(path.relative_to(SRC)), ast.parse(path.read_text(encoding="utf-8")))
        for path in sorted(SRC.rglob("*.py"))
    ]


def _repository_writes(tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner = node.func.value
        # `self.events` and `ctx.events` are lists of events being made, not repositories.
        if isinstance(owner, ast.Attribute) and getattr(owner.value, "id", "") in {"self", "ctx"}:
            continue
        if isinstance(owner, ast.Attribute) and (owner.attr, node.func.attr) in TASK_WRITES:
            found.append(f"{owner.attr}.{node.func.attr} (line {node.lineno})")
    return found


def _table_statements(tree: ast.Module) -> list[str]:
    """`sa.insert(tasks)`, `sa.update(tasks)`, `sa.delete(tasks)` and their like."""
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        name = (
            node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        )
        table = node.args[0]
        if name in {"insert", "update", "delete"} and getattr(table, "id", None) == "tasks":
            found.append(f"{name}(tasks) (line {node.lineno})")
    return found


def test_only_the_engine_writes_task_rows() -> None:
    offenders = {
        module: writes
        for module, tree in _modules()
        if module not in WRITERS and (writes := _repository_writes(tree))
    }
    assert offenders == {}


def test_the_engine_writes_task_rows() -> None:
    """The check above looks for the right calls: the engine makes them."""
    (engine,) = [tree for module, tree in _modules() if module in WRITERS]
    found = {w.split(" ")[0] for w in _repository_writes(engine)}
    assert {"events.append_many", "events.insert_roots"} <= found


def test_no_statement_on_the_tasks_table_outside_storage() -> None:
    offenders = {
        module: statements
        for module, tree in _modules()
        if module not in STORAGE_OWN and (statements := _table_statements(tree))
    }
    assert offenders == {}
