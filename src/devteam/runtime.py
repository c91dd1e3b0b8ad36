"""Settings of the Python runtime for a long-running DevTeam process."""

from __future__ import annotations

import gc

GC_THRESHOLDS = (10_000, 20, 20)
"""Allocations before a young collection, and young (then middle) collections before an
older one. Python's defaults, (700, 10, 10), are made for short scripts."""


def tune_gc() -> None:
    """Collect garbage less often, and never walk what start-up loaded.

    Every transition allocates many short-lived objects; with the default thresholds
    a full collection walked every object of the process (modules, pydantic schemas,
    SQLAlchemy metadata) several times a second under load: 0.56 s of the 1.14 s of
    CPU that 1,000 concurrent subtasks took. What is alive at the first start-up lives
    as long as the process: frozen, collections skip it. Later calls (a process that
    starts services again, as tests do) only set the thresholds.
    """
    global _frozen
    if not _frozen:
        gc.freeze()
        _frozen = True
    gc.set_threshold(*GC_THRESHOLDS)


_frozen = False
