"""Wall time of the test suite, one test file at a time: seconds, outcome counts and machine load per file, as JSON.

    python benchmarks/suite_wall_time.py tests/server/test_cli_rehearsal_docs.py tests/server/test_fleet_gateway.py
    python benchmarks/suite_wall_time.py --slow-only --out benchmarks/results/suite_wall_time.json
    python benchmarks/suite_wall_time.py --make-test --out benchmarks/results/make_test_wall_time.json

With --make-test it runs `make test` once, as a user or CI does (ruff, then the whole suite on the Makefile's
pytest-xdist workers), and records its wall seconds, the CPU seconds of the processes `make test` reaped and the CPU
seconds the whole machine was busy (from /proc/stat: it also counts what outlived its parent, such as Ray workers and
forked Flower tasks, and anything else running on the machine). Otherwise each file runs
in its own `python -m pytest -q` process, one after the other (files never share the CPU with each other), so a
file's seconds include its imports and its module fixtures. The 1-minute load average is recorded before and after:
on a shared machine a figure means little without it.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from result_json import emit, machine_facts

REPO = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)")


def load_average() -> float:
    """The 1-minute load average."""
    return round(os.getloadavg()[0], 2)


def slow_files() -> list[str]:
    """Test files that mark tests `slow` (the long end-to-end ones), relative to the repository."""
    marked = []
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        if "mark.slow" in path.read_text():
            marked.append(str(path.relative_to(REPO)))
    return marked


def outcome_counts(summary_line: str) -> dict[str, int]:
    """Outcome -> count from pytest's last line ("1 failed, 3 passed, 2 errors in 9.1s"); "errors" counts as "error"."""
    return {("error" if kind.startswith("error") else kind): int(n) for n, kind in SUMMARY.findall(summary_line)}


def time_file(test_file: str, timeout_s: float) -> dict[str, Any]:
    """Run one test file with pytest in a subprocess; its wall seconds, exit code, outcome counts and load."""
    before = load_average()
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test_file],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
    )
    seconds = time.monotonic() - started
    last_line = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    counts = outcome_counts(last_line)
    return {
        "file": test_file,
        "seconds": round(seconds, 1),
        "exit_code": done.returncode,
        "outcomes": counts,
        "load_1min_before": before,
        "load_1min_after": load_average(),
    }


def machine_busy_cpu_seconds() -> float | None:
    """CPU seconds every core of the machine spent not idle since boot (/proc/stat); None off Linux."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            ticks = [int(value) for value in stat.readline().split()[1:]]
    except OSError:
        return None
    idle = ticks[3] + ticks[4]  # idle and iowait
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")


def time_make_test(timeout_s: float) -> dict[str, Any]:
    """Run `make test` in the repository; its wall seconds, CPU seconds (reaped children, whole machine), counts."""
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy_before = machine_busy_cpu_seconds()
    started = time.monotonic()
    done = subprocess.run(["make", "test"], cwd=REPO, capture_output=True, text=True, timeout=timeout_s)
    seconds = time.monotonic() - started
    busy_after = machine_busy_cpu_seconds()
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = [line for line in done.stdout.splitlines() if SUMMARY.search(line) and " in " in line]
    cpu_seconds = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return {
        "command": "make test",
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu_seconds, 1),
        "cores_busy_on_average": round(cpu_seconds / seconds, 2),
        "machine_busy_cpu_seconds": (
            round(busy_after - busy_before, 1) if busy_before is not None and busy_after is not None else None
        ),
        "exit_code": done.returncode,
        "outcomes": outcome_counts(summary[-1]) if summary else {},
        "pytest_summary": summary[-1].strip("= ") if summary else "",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="test files, relative to the repository")
    parser.add_argument("--slow-only", action="store_true", help="every test file with tests marked slow")
    parser.add_argument("--make-test", action="store_true", help="time `make test` once instead of single files")
    parser.add_argument("--timeout-s", type=float, default=3600.0, help="per file or make test (default 3600)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    if args.make_test:
        if args.files or args.slow_only:
            parser.error("--make-test times the whole suite: name no files and no --slow-only")
        print("timing make test ...", file=sys.stderr, flush=True)
        timed = time_make_test(args.timeout_s)
        emit({**timed, "machine": machine_facts(load_before)}, args.out)
        return 0 if timed["exit_code"] == 0 else 1
    files = list(args.files) + (slow_files() if args.slow_only else [])
    if not files:
        parser.error("name test files or pass --slow-only")
    missing = [name for name in files if not (REPO / name).is_file()]
    if missing:
        parser.error(f"no such test file: {', '.join(missing)}")
    results = []
    for test_file in files:
        print(f"timing {test_file} ...", file=sys.stderr, flush=True)
        results.append(time_file(test_file, args.timeout_s))
        print(f"  {results[-1]['seconds']} s, exit {results[-1]['exit_code']}", file=sys.stderr, flush=True)
    report = {
        "machine": machine_facts(load_before),
        "files": results,
        "total_seconds": round(sum(entry["seconds"] for entry in results), 1),
        "all_passed": all(entry["exit_code"] == 0 for entry in results),
    }
    emit(report, args.out)
    return 0 if report["all_passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
