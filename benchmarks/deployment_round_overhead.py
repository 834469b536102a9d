"""Deployment round overhead on loopback: round wall time minus the slowest site's local training time, with and
without SecAgg+, and bytes uploaded per site per round. Runs real `bcvlm-server` + `bcvlm-client` processes
(TLS, SuperNode auth, DP-SGD) on synthetic sites; prints JSON (and writes it with --out).

The overhead is broken down per round from the ServerApp's `grid-timing` lines (when each exchange was pushed and
each reply seen) and the sites' `task-timing` lines (when each ClientApp process started, entered our code, and
handled its message), following the site that answered last in every exchange (the critical path):
- push_and_dispatch_wait: the ServerApp pushing the messages and their arrays, the SuperNode's idle poll (up to 3 s
  in Flower 1.42), the SuperExec's 0.5 s poll and the process launch;
- interpreter_and_imports: Python start and imports up to our entry point (bcvlm_client.approved_clientapp);
- message_and_fab_pull: Flower's runtime pulling the message, its arrays and the FAB from the SuperNode;
- fab_install_and_app_import: the FAB check, unpacking the FAB, importing the ClientApp;
- handling_*: the message itself; for training minus the site's training time (torch import, model build, data,
  DP setup, masking); evaluation counted whole;
- reply_wait: reply upload, the SuperNode's 0.5 s wait, the ServerApp's 1 s poll;
- server_between_exchanges: the ServerApp's own work between exchanges (aggregation, checkpoint, records).

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
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bcvlm_model.atomic_io import atomic_write_json
from bcvlm_server.polling_grid import GRID_TIMING_MARKER
from bcvlm_testing.loopback import TINY_FEDERATION, LoopbackFederation, marked_json_lines

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


def overhead_breakdown(
    exchanges: list[dict[str, Any]], tasks: dict[str, dict[str, Any]], train_seconds: dict[str, float]
) -> dict[str, Any]:
    """Seconds per component of one round, summed over its exchanges along the last-answering site (see above)."""
    parts = dict.fromkeys(
        [
            "push_and_dispatch_wait",
            "interpreter_and_imports",
            "message_and_fab_pull",
            "fab_install_and_app_import",
            "handling_secagg_key_stages",
            "handling_train_minus_training",
            "handling_evaluate",
            "reply_wait",
        ],
        0.0,
    )
    stages = []
    matched = 0
    exchange_total = 0.0
    for exchange in exchanges:
        replies = {mid: m["reply"] for mid, m in exchange["messages"].items() if m["reply"] is not None}
        if not replies:
            continue
        last_id = max(replies, key=replies.get)
        wall = replies[last_id] - exchange["push_start"]
        exchange_total += wall
        stage = exchange["stage"] or exchange["type"]
        entry: dict[str, Any] = {
            "stage": stage,
            "wall_seconds": round(wall, 2),
            "server_push_all_seconds": round(exchange["pushed"] - exchange["push_start"], 2),
        }
        task = tasks.get(last_id)
        if task is not None and task.get("process_start") and task.get("main"):
            matched += 1
            handling = task["handle_end"] - task["handle_start"]
            components = {
                "push_and_dispatch_wait": task["process_start"] - exchange["push_start"],
                "interpreter_and_imports": task["main"] - task["process_start"],
                "message_and_fab_pull": task.get("fab_check", task["main"]) - task["main"],
                "fab_install_and_app_import": task["handle_start"] - task.get("fab_check", task["main"]),
                "reply_wait": replies[last_id] - task["handle_end"],
            }
            if stage in ("train", "collect_masked_vectors"):  # torch import, model build, data, DP setup, masking
                trained = train_seconds.get(task["site"], 0.0)
                components["handling_train_minus_training"] = handling - trained
                entry["site_training_seconds"] = round(trained, 2)
            elif stage == "evaluate":  # torch import, model build, evaluation
                components["handling_evaluate"] = handling
            else:
                components["handling_secagg_key_stages"] = handling
            for key, value in components.items():
                parts[key] += value
            entry.update({key: round(value, 2) for key, value in components.items()})
            entry["site"] = task["site"]
        stages.append(entry)
    return {
        "components_seconds": {key: round(value, 2) for key, value in parts.items()},
        "exchanges_seconds": round(exchange_total, 2),
        "exchanges": stages,
        "exchanges_matched_to_site_timing": f"{matched}/{len(stages)}",
    }


def run_one(args: argparse.Namespace, secagg: bool, root: Path) -> dict[str, Any]:
    sites = tuple(f"site{i}" for i in range(args.sites))
    size = "64x32" if args.model == "tiny" else "256x128"
    fed = LoopbackFederation(root, sites, federation_config(args, secagg), n_patients=args.patients, image_size=size)
    started = time.monotonic()
    try:
        server, _ = fed.start_federation(timeout_s=600)
        code = server.wait(timeout=args.timeout * 4 * args.rounds + 900)
    finally:
        fed.stop_all()
    if code != 0:
        raise SystemExit(f"server exited {code}; see {root}/server.out and {fed.run_dir}/logs")
    exchanges = marked_json_lines(fed.run_dir / "logs" / "server.log", GRID_TIMING_MARKER)
    tasks = {}
    for site in sites:
        for task in fed.task_timings(site):
            tasks[task["message_id"]] = {**task, "site": site}
    rounds = []
    for server_round in range(1, args.rounds + 1):
        metrics = fed.round_metrics(server_round)
        # Sites no longer send their training time; each site's own log has it ("training took ... s").
        train_by_site = site_training_seconds(fed, server_round) or {"none": 0.0}
        train = list(train_by_site.values())
        uploads = [entry.up for entry in metrics.bytes.values()]
        breakdown = overhead_breakdown([e for e in exchanges if e["round"] == str(server_round)], tasks, train_by_site)
        rounds.append(
            {
                "round": server_round,
                "wall_seconds": round(metrics.wall_seconds, 2),
                "slowest_site_train_seconds": round(max(train), 2),
                "overhead_seconds": round(metrics.wall_seconds - max(train), 2),
                "bytes_up_per_site": {"min": min(uploads), "max": max(uploads)},
                "bytes_down_per_site": {"max": max(entry.down for entry in metrics.bytes.values())},
                "overhead_breakdown": {
                    **breakdown,
                    "server_between_exchanges": round(metrics.wall_seconds - breakdown["exchanges_seconds"], 2),
                },
            }
        )
    return {
        "secagg": secagg,
        "rounds": rounds,
        "median_overhead_seconds": round(statistics.median(r["overhead_seconds"] for r in rounds), 2),
        "total_seconds_incl_startup": round(time.monotonic() - started, 1),
    }


def site_training_seconds(fed: LoopbackFederation, server_round: int) -> dict[str, float]:
    """{site name: seconds its round `server_round` trained}, read from each site's own log."""
    from bcvlm_client.site_config import load_site_config
    from bcvlm_client.site_log import training_seconds

    found = {}
    for site_yaml in fed.site_yamls.values():
        site = load_site_config(site_yaml, check_paths=False)
        seconds = training_seconds(site.state_dir).get((site.site_id, server_round))
        if seconds is not None:
            found[site.site_id] = seconds
    return found


def targets(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Issue 14's targets: SecAgg+ round <= 1.1x the plain round, overhead <= 30 s per round, upload <= 4 B/param."""
    by_mode = {result["secagg"]: result for result in results}
    out: dict[str, Any] = {}
    for result in results:
        name = "secagg" if result["secagg"] else "plain"
        out[f"{name}_max_overhead_seconds"] = max(r["overhead_seconds"] for r in result["rounds"])
        out[f"{name}_overhead_at_most_30s"] = out[f"{name}_max_overhead_seconds"] <= 30.0
    if True in by_mode and False in by_mode:
        secagg_wall = statistics.mean(r["wall_seconds"] for r in by_mode[True]["rounds"])
        plain_wall = statistics.mean(r["wall_seconds"] for r in by_mode[False]["rounds"])
        out["secagg_over_plain_round_wall"] = round(secagg_wall / plain_wall, 3)
        out["secagg_round_at_most_1_1x_plain"] = secagg_wall / plain_wall <= 1.1
        plain_up = max(r["bytes_up_per_site"]["max"] for r in by_mode[False]["rounds"])
        secagg_up = max(r["bytes_up_per_site"]["max"] for r in by_mode[True]["rounds"])
        # A plain upload is the fp32 update (4 B per parameter) plus metrics: the ratio bounds SecAgg+'s B/param.
        out["secagg_over_plain_upload"] = round(secagg_up / plain_up, 3)
        out["secagg_upload_bytes_per_parameter_approx"] = round(4 * secagg_up / plain_up, 3)
    return out


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
    parser.add_argument("--keep", help="run in this folder and keep it (logs, run directory) instead of a temp folder")
    args = parser.parse_args()
    from bcvlm_model.cpu_memory import keep_freed_memory

    keep_freed_memory()  # as every bcvlm command does (see bcvlm_model/cpu_memory.py)
    modes = {"both": [True, False], "on": [True], "off": [False]}[args.secagg]
    results = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bcvlm_bench_") as tmp:
        for secagg in modes:
            folder = Path(args.keep or tmp) / ("secagg" if secagg else "plain")
            folder.mkdir(parents=True)
            results.append(run_one(args, secagg, folder))
            results[-1]["load_average_1_5_15_after"] = [round(x, 2) for x in os.getloadavg()]
    report = {
        "benchmark": "deployment_round_overhead",
        "command": "python benchmarks/deployment_round_overhead.py " + " ".join(sys.argv[1:]),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_1_5_15_before": [round(x, 2) for x in load_before],
        },
        "sites": args.sites,
        "model": args.model,
        "local_steps": args.local_steps,
        "results": results,
        "targets": targets(results),
    }
    print(json.dumps(report, indent=2))
    if args.out:
        atomic_write_json(args.out, report)


if __name__ == "__main__":
    main()
