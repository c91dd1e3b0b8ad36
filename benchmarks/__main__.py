"""Run the benchmark suite: `uv run python -m benchmarks [--case a,b,c,d,e] [--backend sqlite]`."""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import (
    case_concurrency,
    case_fanout,
    case_orchestration,
    case_recovery,
    case_submission,
)
from benchmarks.common import Backend, Result, environment, print_table
from devteam.observability.logging import configure_logging

CASES: dict[str, Any] = {
    "a": case_submission,
    "b": case_orchestration,
    "c": case_concurrency,
    "d": case_fanout,
    "e": case_recovery,
}
RESULTS = Path(__file__).parent / "results"


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--case", default=",".join(CASES), help="cases to run, e.g. a,d")
    parser.add_argument(
        "--backend",
        default="sqlite,postgres",
        help="sqlite (SQLite + in-process broker), postgres (Postgres + Redis), or both",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds per case (median reported)")
    parser.add_argument("--quick", action="store_true", help="smaller workloads, for a smoke run")
    parser.add_argument("--json", type=Path, default=RESULTS / "latest.json")
    return parser.parse_args()


async def main() -> int:
    args = parse()
    configure_logging(level="WARNING", fmt="console")
    cases = [c.strip() for c in args.case.split(",") if c.strip()]
    backends: list[Backend] = [b.strip() for b in args.backend.split(",")]  # type: ignore[misc]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        print(f"unknown case {unknown[0]!r}; choose from {', '.join(CASES)}", file=sys.stderr)
        return 2
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        for case in cases:
            module = CASES[case]
            for backend in backends:
                if backend not in getattr(module, "BACKENDS", ("sqlite", "postgres")):
                    continue
                print(f"running {module.__name__.rsplit('_', 1)[-1]} on {backend}...", flush=True)
                async with environment(backend, workdir) as env:
                    results += await module.run(env, workdir, args.rounds, args.quick)
    print()
    print_table(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": {
                    "python": platform.python_version(),
                    "cpus": __import__("os").cpu_count(),
                },
                "rounds": args.rounds,
                "quick": args.quick,
                "results": [r.as_dict() for r in results],
            },
            indent=2,
        )
    )
    print(f"\nwritten to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
