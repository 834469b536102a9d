"""Deployment round overhead on loopback: round wall time minus the slowest site's local training time, with and
without SecAgg+, and bytes uploaded per site per round. Runs real `bcvlm-server` + `bcvlm-client` processes
(TLS, SuperNode auth, DP-SGD) on synthetic sites; prints JSON (and writes it with --out).

    python benchmarks/deployment_round_overhead.py --sites 3 --rounds 2               # tiny model (fast)
    python benchmarks/deployment_round_overhead.py --sites 3 --model default          # default VLM (27.8M params, 2.9M federated)

On one machine the sites, the SuperLink and the ServerApp share the CPU, so the overhead includes contention that
a real deployment (one machine per site) does not have; run it on a machine with spare cores for real figures.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bcvlm_model.atomic_io import atomic_write_json
from bcvlm_testing.loopback import TINY_FEDERATION, LoopbackFederation, wait_until

DEFAULT_MODEL_FEDERATION: dict[str, Any] = {
    **TINY_FEDERATION,
    "model": {},  # the default VLM: all-MiniLM-L6-v2 text encoder + EfficientNet-Lite0 + co-attention
    "preprocess": {"image_height": 256, "image_width": 128},
    "text": {"max_length": 64},
}


def federation_config(args: argparse.Namespace, secagg: bool) -> dict[str, Any]:
    base = copy.deepcopy(DEFAULT_MODEL_FEDERATION if args.model == "default" else TINY_FEDERATION)
    base["rounds"] = args.rounds
    base["min_sites"] = args.sites
    base["local_train"] = {**base["local_train"], "local_steps": args.local_steps}
    base["secagg"] = {**base["secagg"], "enabled": secagg, "timeout_s": args.timeout}
    base["round_timeout_s"] = args.timeout
    return base


def run_one(args: argparse.Namespace, secagg: bool, root: Path) -> dict[str, Any]:
    sites = tuple(f"site{i}" for i in range(args.sites))
    size = "64x32" if args.model == "tiny" else "256x128"
    fed = LoopbackFederation(root, sites, federation_config(args, secagg), n_patients=args.patients, image_size=size)
    started = time.monotonic()
    try:
        server = fed.start_server()
        wait_until(lambda: fed.output("server.out").count("registered as node") == len(sites), 600, "registration")
        for site in sites:
            fed.start_client(fed.site_yamls[site], "--restart-delay", "3")
        code = server.wait(timeout=args.timeout * 4 * args.rounds + 900)
    finally:
        fed.stop_all()
    if code != 0:
        raise SystemExit(f"server exited {code}; see {root}/server.out and {fed.run_dir}/logs")
    rounds = []
    for server_round in range(1, args.rounds + 1):
        metrics = fed.round_metrics(server_round)
        train = [entry["train_seconds"] for entry in metrics["fit"]["sites"].values()]
        uploads = [entry["up"] for entry in metrics["bytes"].values()]
        rounds.append({
            "round": server_round,
            "wall_seconds": round(metrics["wall_seconds"], 2),
            "slowest_site_train_seconds": round(max(train), 2),
            "overhead_seconds": round(metrics["wall_seconds"] - max(train), 2),
            "bytes_up_per_site": {"min": min(uploads), "max": max(uploads)},
            "bytes_down_per_site": {"max": max(entry["down"] for entry in metrics["bytes"].values())},
        })
    return {
        "secagg": secagg,
        "rounds": rounds,
        "median_overhead_seconds": round(statistics.median(r["overhead_seconds"] for r in rounds), 2),
        "total_seconds_incl_startup": round(time.monotonic() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--local-steps", type=int, default=2)
    parser.add_argument("--patients", type=int, default=24, help="synthetic patients in total (4 images each)")
    parser.add_argument("--model", choices=["tiny", "default"], default="tiny")
    parser.add_argument("--secagg", choices=["both", "on", "off"], default="both")
    parser.add_argument("--timeout", type=float, default=600.0, help="per-round / per-SecAgg-stage timeout, seconds")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    from bcvlm_model.cpu_memory import keep_freed_memory

    keep_freed_memory()  # as every bcvlm command does (see bcvlm_model/cpu_memory.py)
    modes = {"both": [True, False], "on": [True], "off": [False]}[args.secagg]
    results = []
    with tempfile.TemporaryDirectory(prefix="bcvlm_bench_") as tmp:
        for secagg in modes:
            folder = Path(tmp) / ("secagg" if secagg else "plain")
            folder.mkdir()
            results.append(run_one(args, secagg, folder))
    report = {
        "benchmark": "deployment_round_overhead",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "sites": args.sites, "model": args.model, "local_steps": args.local_steps,
        "results": results,
    }
    print(json.dumps(report, indent=2))
    if args.out:
        atomic_write_json(args.out, report)


if __name__ == "__main__":
    main()
