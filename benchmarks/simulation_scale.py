"""Benchmark: wall time of a simulated federation with 50 virtual sites (config `scale50`) on this machine; prints JSON."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. split.num_sites=100 server.rounds=3")
    parser.add_argument("--config-name", default="scale50")
    parser.add_argument("--run-dir", default=None, help="default: a temporary folder")
    args = parser.parse_args(argv)
    from bcvlm_model.cpu_memory import keep_freed_memory

    keep_freed_memory()  # as every bcvlm command does (see bcvlm_model/cpu_memory.py)
    from bcvlm_client.flower_process import apply_flower_env_defaults

    apply_flower_env_defaults()
    from bcvlm_model.atomic_io import read_json
    from bcvlm_simulation.config import load_simulation_config
    from bcvlm_simulation.runner import run_simulation_job

    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix="bcvlm_scale_")) / "run"
    cfg = load_simulation_config(args.config_name, [*args.overrides, f"run_dir={run_dir}", "progress=false"])
    load_before = os.getloadavg()
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the JSON result
        run_simulation_job(cfg)
    wall = time.perf_counter() - started
    metrics = read_json(run_dir / "metrics.json")
    rounds = metrics["rounds"]
    result = {
        "benchmark": "simulation_scale",
        "config": args.config_name,
        "overrides": args.overrides,
        "virtual_sites": metrics["run"]["num_sites"],
        "sites_that_trained_last_round": sum(1 for v in rounds[-1]["epsilon"].values() if v) if rounds else 0,
        "rounds": len(rounds),
        "model_kind": metrics["run"]["model_kind"],
        "image_size": metrics["run"]["image_size"],
        "dp": metrics["run"]["dp"],
        "secagg": metrics["run"]["secagg"],
        "wall_time_s": round(wall, 1),
        "federated_wall_time_s": metrics["run"]["federated_wall_time_s"],
        "round_wall_time_s": [round(r["wall_time_s"], 1) for r in rounds],
        "bytes_up_per_round": [r["bytes_up"] for r in rounds],
        "pooled_auc_last_round": rounds[-1]["pooled_auc"] if rounds else None,
        "peak_rss_mb_driver": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "load_avg_before": [round(v, 2) for v in load_before],
            "load_avg_after": [round(v, 2) for v in os.getloadavg()],
        },
        "run_dir": str(run_dir),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
