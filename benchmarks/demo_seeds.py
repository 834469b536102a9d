"""Benchmark: `bcvlm demo` for several seeds (seed, cohort.synth.seed, split.seed), one JSON table of what the
private federated training adds (federated minus public start), federated against local-only and DP-centralized,
calcification AUC and wall time per seed."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "demo_seeds.json"
COMPARED = ("public_pretrained", "local_only", "dp_centralized", "centralized")
"""Methods the federated model is compared with (paired, on the same patient resamples)."""


def _negated(interval: list[float] | None) -> list[float] | None:
    """CI of federated minus X from the run's CI of X minus federated (same resamples, so exactly the mirror)."""
    return None if interval is None else [round(-interval[1], 4), round(-interval[0], 4)]


def _difference(methods: dict[str, Any], other: str, level: str, task: str) -> dict[str, Any] | None:
    """Federated minus `other` at `level` (pooled_auc or mean_site_auc): point value and paired 95% CI."""
    if other not in methods:
        return None
    federated, compared = methods["federated"][level].get(task), methods[other][level].get(task)
    point = None if federated is None or compared is None else round(federated - compared, 4)
    ci = _negated(methods[other].get(f"{level}_minus_federated_ci", {}).get(task))
    return {"value": point, "ci95": ci, "ci_above_0": ci is not None and ci[0] > 0}


def seed_row(metrics: dict[str, Any], wall_s: float) -> dict[str, Any]:
    """One seed's line of the table, from its metrics.json and the measured wall time of `bcvlm demo`."""
    methods = metrics["methods"]
    row: dict[str, Any] = {"wall_time_s": round(wall_s, 1), "run_wall_time_s": metrics["run"]["wall_time_s"]}
    for task in ("malignancy", "calcification"):
        row[task] = {
            "federated": {
                level: {
                    "value": methods["federated"][level].get(task),
                    "ci95": methods["federated"][f"{level}_ci"][task],
                }
                for level in ("mean_site_auc", "pooled_auc")
            },
            "federated_minus": {
                other: {level: _difference(methods, other, level, task) for level in ("mean_site_auc", "pooled_auc")}
                for other in COMPARED
            },
        }
    public = row["malignancy"]["federated_minus"]["public_pretrained"]
    local = row["malignancy"]["federated_minus"]["local_only"]
    calcification = row["calcification"]["federated"]["mean_site_auc"]["value"]
    row["targets"] = {
        "federated_minus_public_start_ci_above_0_mean_site": bool(public and public["mean_site_auc"]["ci_above_0"]),
        "federated_minus_public_start_ci_above_0_pooled": bool(public and public["pooled_auc"]["ci_above_0"]),
        "federated_at_least_local_only_mean_site": bool(
            local and local["mean_site_auc"]["value"] is not None and local["mean_site_auc"]["value"] >= 0
        ),
        "calcification_mean_site_auc_at_least_0.75": calcification is not None and calcification >= 0.75,
        "wall_time_at_most_600_s": wall_s <= 600,
    }
    return row


def run_seed(seed: int, root: Path, overrides: list[str]) -> tuple[dict[str, Any], float]:
    """`bcvlm demo` for one seed in its own process and run dir; its metrics.json and wall time."""
    run_dir = root / f"seed_{seed}"
    command = [
        sys.executable,
        "-c",
        "from bcvlm_model.cli import main; raise SystemExit(main())",
        "demo",
        f"seed={seed}",
        f"cohort.synth.seed={seed}",
        f"split.seed={seed}",
        f"run_dir={run_dir}",
        f"cohort.synth_dir={root / f'cohort_{seed}'}",  # kept between invocations: a rerun reuses the DICOMs
        f"pretrain.cohort.synth_dir={root / 'public_cohort'}",  # one public cohort (its own seed) for every seed
        "progress=false",
        *overrides,
    ]
    started = time.perf_counter()
    with (root / f"seed_{seed}.log").open("w") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(
            f"bcvlm demo for seed {seed} failed (exit {done.returncode}); see {root / f'seed_{seed}.log'}"
        )
    return json.loads((run_dir / "metrics.json").read_text()), wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every seed's `bcvlm demo`")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--root", default="runs/demo_seeds", help="folder of the per-seed run dirs and logs")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="the JSON table")
    args = parser.parse_args(argv)
    seeds = [int(value) for value in args.seeds.split(",") if value.strip()]
    if not seeds:
        parser.error("--seeds: give at least one seed")
    root = Path(args.root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    table: dict[str, Any] = {
        "benchmark": "demo_seeds",
        "command": "python benchmarks/demo_seeds.py " + " ".join([f"--seeds={args.seeds}", *args.overrides]),
        "overrides": args.overrides,
        "note": "federated_minus.X = federated AUC minus X's, CI from the run's paired patient-clustered bootstrap "
        "(the same resamples for both methods); test figures, reported once per seed, never used to tune",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "seeds": {},
    }
    for seed in seeds:
        load_before = os.getloadavg()
        metrics, wall = run_seed(seed, root, args.overrides)
        row = seed_row(metrics, wall)
        row["load_average_1_5_15_before"] = [round(value, 2) for value in load_before]
        row["load_average_1_5_15_after"] = [round(value, 2) for value in os.getloadavg()]
        table["seeds"][str(seed)] = row
        print(f"[demo_seeds] seed {seed}: {wall:.0f} s", file=sys.stderr, flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(table, indent=2) + "\n")
    print(json.dumps(table, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
