"""Benchmark: how far the pooled AUC the server sees (sites' released histograms) is from the exact pooled AUC.

Rescores a finished simulation's final global model on every site's test images, releases each site's histogram
with several (max_bins, min_cell_count) settings (`bcvlm_client.evaluation_release`), and prints the pooled AUC of
the released histograms minus the pooled AUC of the exact 1000-bin histograms, per task. JSON with --out.

    python benchmarks/evaluation_release_gap.py --run-dir demo_run --out benchmarks/results/evaluation_release_gap.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bcvlm_client.evaluation_release import release_histogram
from bcvlm_client.site_config import load_site_config
from bcvlm_model import TASKS
from bcvlm_model.atomic_io import atomic_write_json
from bcvlm_model.checkpoint import load_checkpoint
from bcvlm_model.data.manifest import read_manifest
from bcvlm_model.metrics import ScoreHistogram, auc_from_histogram, score_histogram
from bcvlm_simulation.evaluation import score_model_on_sites
from bcvlm_simulation.round_metrics import final_checkpoint_dir

GRID = 1000
SETTINGS = [(bins, cells) for bins in (100, 200, 1000) for cells in (1, 3, 5)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a finished `bcvlm simulate` / `bcvlm demo` run")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    final = load_checkpoint(final_checkpoint_dir(args.run_dir / "federated"))
    tests, cache_dir = {}, None
    for site_yaml in sorted((args.run_dir / "sites").glob("site_*.yaml")):
        site = load_site_config(site_yaml, check_paths=False)
        table = read_manifest(site.data.manifest)
        tests[site.site_id] = table[table["split"] == site.data.eval_split].reset_index(drop=True)
        cache_dir = site.data.cache_dir
    scores = score_model_on_sites(
        final.model, tests, final.preprocess_cfg, final.text_cfg, final.model_cfg, cache_dir, 32
    )
    report: dict = {"run_dir": str(args.run_dir), "grid_bins": GRID, "tasks": {}}
    for task in TASKS:
        site_histograms = [score_histogram(s.scores[task], s.labels[task], GRID) for s in scores.values()]
        exact = auc_from_histogram(sum(site_histograms, ScoreHistogram.empty(GRID)))
        gaps = {}
        for bins, cells in SETTINGS:
            released = sum((release_histogram(h, bins, cells) for h in site_histograms), ScoreHistogram.empty(GRID))
            gaps[f"max_bins={bins},min_cell_count={cells}"] = round(auc_from_histogram(released) - exact, 4)
        report["tasks"][task] = {"exact_pooled_auc": round(exact, 4), "released_minus_exact": gaps}
    print(json.dumps(report, indent=2))
    if args.out:
        atomic_write_json(args.out, report)


if __name__ == "__main__":
    main()
