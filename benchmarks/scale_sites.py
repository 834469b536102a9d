"""Benchmark: simulated federations of 50 and 200 virtual sites (configs `scale50`, `scale200`) run by the same command;
wall time per round and peak memory of the whole process tree (driver, Ray's daemons and workers); writes JSON.

    OMP_NUM_THREADS=1 python benchmarks/scale_sites.py --out benchmarks/results/scale_sites.json
    OMP_NUM_THREADS=1 python benchmarks/scale_sites.py --configs scale200 server.rounds=1   # fewer rounds

Each config runs `benchmarks/simulation_scale.py` in a fresh process; memory is sampled every 0.5 s as the summed
proportional set size (PSS: shared pages split between the processes sharing them) of that process and all its
descendants, read from /proc (Linux only).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from result_json import emit, machine_facts

SIMULATION_SCALE = Path(__file__).resolve().parent / "simulation_scale.py"


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(k) for k in (task / "children").read_text().split()]
        except OSError:  # the process or thread ended while we looked
            continue
    return kids


def process_tree(root: int) -> list[int]:
    """`root` and all its live descendants."""
    seen, todo = [], [root]
    while todo:
        pid = todo.pop()
        seen.append(pid)
        todo += _children(pid)
    return seen


def pss_bytes(pid: int) -> int:
    """Proportional set size of one process (0 when it has ended)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class TreeMemorySampler(threading.Thread):
    """Samples the summed PSS of a process tree until stopped; keeps the peak and the process count at the peak."""

    def __init__(self, root: int, every_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.root, self.every_s = root, every_s
        self.peak_bytes, self.processes_at_peak, self.samples = 0, 0, 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            pids = process_tree(self.root)
            total = sum(pss_bytes(pid) for pid in pids)
            self.samples += 1
            if total > self.peak_bytes:
                self.peak_bytes, self.processes_at_peak = total, len(pids)
            self._done.wait(self.every_s)

    def stop(self) -> None:
        self._done.set()
        self.join()


def run_config(config: str, overrides: list[str], run_dir: Path) -> dict[str, Any]:
    """One `simulation_scale.py` run: its JSON result plus the process tree's peak memory."""
    command = [sys.executable, str(SIMULATION_SCALE), "--config-name", config, "--run-dir", str(run_dir), *overrides]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    sampler = TreeMemorySampler(process.pid)
    sampler.start()
    stdout, _ = process.communicate()
    sampler.stop()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {process.returncode}")
    result = json.loads(stdout)
    rounds = result["round_wall_time_s"]
    return {
        **result,
        "command": " ".join(["python", "benchmarks/simulation_scale.py", *command[2:]]),
        "process_wall_time_s": round(time.perf_counter() - started, 1),
        "mean_round_wall_time_s": round(sum(rounds) / len(rounds), 1) if rounds else None,
        "peak_pss_mb_process_tree": round(sampler.peak_bytes / 2**20, 1),
        "processes_at_peak": sampler.processes_at_peak,
        "memory_samples": sampler.samples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every config, e.g. server.rounds=1")
    parser.add_argument("--configs", nargs="+", default=["scale50", "scale200"])
    parser.add_argument("--run-dir", default="/tmp/bcvlm_scale_sites", help="one sub-folder per config")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    runs = [run_config(config, args.overrides, Path(args.run_dir) / config) for config in args.configs]
    result: dict[str, Any] = {
        "benchmark": "scale_sites",
        "runs": runs,
        "machine": {
            **machine_facts(load_before),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        },
    }
    means = {run["config"]: run["mean_round_wall_time_s"] for run in runs}
    if means.get("scale50") and means.get("scale200"):
        result["round_time_ratio_200_to_50"] = round(means["scale200"] / means["scale50"], 2)
        result["target_ratio"] = 3.0
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
