"""Benchmark: choose `server.dp_trainable.updates` for the demo on validation AUCs only (no test figure is read).

For each candidate and seed, `bcvlm demo` runs the federated model alone (every baseline off); the table keeps the
federated model's and the public start's pooled validation AUCs, and the choice is the candidate with the highest
mean validation AUC over seeds and both tasks."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from typing import Any

from demo_seeds import run_seed
from result_json import emit, machine_facts

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "dp_updates_validation.json"
CANDIDATES = ("all", "norms_biases_head", "head")
TASKS = ("malignancy", "calcification")
BASELINES_OFF = [
    f"baselines.{name}=false"
    for name in ("centralized", "local_only", "image_only", "dp_centralized", "private", "no_site_fields")
]


def validation_row(metrics: dict[str, Any]) -> dict[str, Any]:
    """The pooled validation AUCs of the federated model and of the public start it began from."""
    methods = metrics["methods"]
    return {
        method: {task: methods[method]["validation_pooled_auc"].get(task) for task in TASKS}
        for method in ("federated", "public_pretrained")
    }


def choose(rows: dict[str, dict[str, dict[str, Any]]]) -> dict[str, float]:
    """Mean federated validation AUC (over seeds and tasks) per candidate."""
    return {
        candidate: round(
            statistics.fmean(
                row["federated"][task] for row in by_seed.values() for task in TASKS if row["federated"][task]
            ),
            4,
        )
        for candidate, by_seed in rows.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every `bcvlm demo`")
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds (default 0,1)")
    parser.add_argument("--candidates", default=",".join(CANDIDATES), help="values of dp_trainable.updates")
    parser.add_argument("--root", default="runs/dp_updates_validation", help="folder of the run dirs and logs")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="the JSON table")
    args = parser.parse_args(argv)
    seeds = [int(value) for value in args.seeds.split(",") if value.strip()]
    candidates = [value.strip() for value in args.candidates.split(",") if value.strip()]
    load_before = os.getloadavg()
    rows: dict[str, dict[str, Any]] = {}
    walls: dict[str, dict[str, float]] = {}
    for candidate in candidates:
        rows[candidate], walls[candidate] = {}, {}
        root = Path(args.root).resolve() / candidate
        root.mkdir(parents=True, exist_ok=True)
        for seed in seeds:
            overrides = [f"server.dp_trainable.updates={candidate}", *BASELINES_OFF, *args.overrides]
            metrics, wall = run_seed(seed, root, overrides)
            rows[candidate][str(seed)] = validation_row(metrics)
            walls[candidate][str(seed)] = round(wall, 1)
            print(f"[dp_updates_validation] {candidate} seed {seed}: {wall:.0f} s", file=sys.stderr, flush=True)
    scores = choose(rows)
    table = {
        "benchmark": "dp_updates_validation",
        "command": "python benchmarks/dp_updates_validation.py "
        + " ".join([f"--seeds={args.seeds}", f"--candidates={','.join(candidates)}", *args.overrides]),
        "note": "pooled validation AUCs only; the test split is scored by each run but never read here",
        "machine": machine_facts(load_before),
        "validation_pooled_auc": rows,
        "wall_time_s": walls,
        "mean_federated_validation_auc": scores,
        "chosen": max(scores, key=scores.get),
    }
    emit(table, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
