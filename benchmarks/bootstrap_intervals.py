"""Benchmark: wall time of the simulation's patient-clustered bootstrap (image- and breast-level) on a demo-sized test set.

The demo scores about 7 methods on about 240 test images (3 sites, 4 images per patient, 2 per breast) with
`bootstrap_resamples` = 1000. `current` is `bcvlm_simulation`'s bootstrap (one sort per method and site, every
resample as case weights); `per_resample` re-sorts every resample with `exact_auc`, the way it was done before,
kept here only as the reference point. Both draw the same patients, so they give the same intervals. Prints JSON
(and writes it with --out), with the load average before and after.

    python benchmarks/bootstrap_intervals.py --out benchmarks/results/bootstrap_intervals_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

import numpy as np
import pandas as pd

from bcvlm_model import TASKS
from bcvlm_model.atomic_io import atomic_write_json
from bcvlm_model.metrics import exact_auc
from bcvlm_simulation.bootstrap import CaseIndex, method_intervals
from bcvlm_simulation.breast_level import breast_level_metrics
from bcvlm_simulation.evaluation import SiteScores

METHODS = ("federated", "centralized", "local_only", "image_only", "no_site_fields", "public_pretrained", "oracle")


def demo_sized(patients_per_site: int, sites: int, seed: int) -> tuple[dict, dict]:
    """Test tables (4 images per patient, label per breast) and correlated scores of every method."""
    rng = np.random.default_rng(seed)
    tables, scores_of = {}, {method: {} for method in METHODS}
    for site in range(sites):
        rows = []
        for patient in range(patients_per_site):
            for side in "LR":
                label = float(rng.uniform() < 0.3)
                rows += [
                    (f"s{site}p{patient}", side, f"s{site}p{patient}{side}{view}", label) for view in ("CC", "MLO")
                ]
        table = pd.DataFrame(rows, columns=["patient_id", "laterality", "image_id", "malignancy"])
        table["calcification"] = table["malignancy"]
        tables[f"site_{site}"] = table
        base = table["malignancy"].to_numpy() + rng.normal(size=len(table))
        for method in METHODS:
            scores = base + rng.normal(0.0, 0.5, size=len(table))
            labels = table["malignancy"].to_numpy()
            scores_of[method][f"site_{site}"] = SiteScores(
                scores=dict.fromkeys(TASKS, scores), labels=dict.fromkeys(TASKS, labels)
            )
    return tables, scores_of


def per_resample(scores_of: dict, tables: dict, resamples: int, seed: int) -> None:
    """The reference: draw patients, concatenate their images, `exact_auc` per site and pooled, every resample."""
    patients = {site: {task: table["patient_id"].to_numpy() for task in TASKS} for site, table in tables.items()}
    index = CaseIndex.from_patients(patients)
    rng = np.random.default_rng(seed)
    for task in TASKS:
        for _ in range(resamples):
            rows = {}
            for site, per_task in index.images_of_patient.items():
                groups = per_task[task]
                rows[site] = np.concatenate([groups[k] for k in rng.integers(0, len(groups), size=len(groups))])
            for per_site in scores_of.values():
                for site, selected in rows.items():
                    exact_auc(per_site[site].scores[task][selected], per_site[site].labels[task][selected])
                exact_auc(
                    np.concatenate([per_site[s].scores[task][r] for s, r in rows.items()]),
                    np.concatenate([per_site[s].labels[task][r] for s, r in rows.items()]),
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients-per-site", type=int, default=20)
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    tables, scores_of = demo_sized(args.patients_per_site, args.sites, seed=0)
    load_before = os.getloadavg()
    timings: dict[str, Any] = {}
    started = time.perf_counter()
    method_intervals(scores_of, tables, args.resamples, seed=0)
    timings["image_level_current_s"] = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    breast_level_metrics(scores_of, tables, n_bins=1000, resamples=args.resamples, seed=0)
    timings["breast_level_current_s"] = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    per_resample(scores_of, tables, args.resamples, seed=0)
    timings["image_level_per_resample_s"] = round(time.perf_counter() - started, 2)
    result = {
        "benchmark": "bootstrap_intervals",
        "test_images": int(sum(len(t) for t in tables.values())),
        "methods": len(METHODS),
        "sites": args.sites,
        "resamples": args.resamples,
        **timings,
        "cpu_count": os.cpu_count(),
        "machine": platform.platform(),
        "load_average_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }
    print(json.dumps(result, indent=2))
    if args.out:
        atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
