"""Benchmark: federated round overhead and upload volume, with and without SecAgg+. Prints JSON.

Round overhead = round wall time minus the sites' local training time. With `--transport inprocess` the real
ServerApp and ClientApps run in one process (InProcessGrid): sites train one after another, so the overhead is
wall time minus the SUM of the sites' training times (what a parallel deployment's "wall minus the slowest site"
measures). With `--transport loopback` a real SuperLink, TLS, SuperNode authentication and one `bcvlm-client`
process per site run on 127.0.0.1 (`bcvlm_testing.loopback`); overhead = wall minus the slowest site. Bytes are
the payload bytes the ServerApp's Grid sent to / received from each site.

The default model has ~30M federated (trainable) parameters: EfficientNet-Lite0 fully trainable, all 6
MiniLM layers trainable, 256-d fusion. Images are tiny (64x32) and sites take 1 local step without DP, so local
training is short and the overhead (serialisation, SecAgg+ masking and key agreement, aggregation, checkpoints)
dominates.

    python benchmarks/federation_round.py --sites 3 --rounds 2
    python benchmarks/federation_round.py --transport loopback --sites 3 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

from bcvlm_client.flower_process import apply_flower_env_defaults
from bcvlm_client.round_record import RoundRecord

apply_flower_env_defaults()  # before Flower is imported: telemetry is read at import

import yaml  # noqa: E402

FEDERATED_30M: dict[str, Any] = {
    "model": {
        "image_encoder": {"trainable_stages": -1},
        "text_encoder": {"num_layers": 0, "trainable_layers": -1},
        "fusion": {"dim": 256, "heads": 8},
        "dropout": 0.0,
    },
    "dp_model": False,
    "preprocess": {"image_height": 64, "image_width": 32},
    "text": {"max_length": 32},
    "local_train": {"local_steps": 1, "learning_rate": 1.0e-4},
    "fraction_evaluate": 0.0,
    "round_timeout_s": 600.0,
}


def _federation(secagg: bool, rounds: int, sites: int) -> dict[str, Any]:
    return {
        **FEDERATED_30M,
        "rounds": rounds,
        "min_sites": sites,
        "secagg": {"enabled": secagg, "timeout_s": 600.0, "max_weight": 1000.0, "clipping_range": 1.0},
        "evaluation": {"min_cases": 2},
    }


def with_site_train_seconds(record: RoundRecord, site_yamls: Iterable[Path]) -> tuple[RoundRecord, list[float]]:
    """The round record and each site's training time for that round, read from the site logs (sites no longer
    send their training time to the server)."""
    from bcvlm_client.site_config import load_site_config
    from bcvlm_client.site_log import training_seconds

    seconds = []
    for site_yaml in site_yamls:
        site = load_site_config(site_yaml, check_paths=False)
        found = training_seconds(site.state_dir).get((site.site_id, record.round))
        if found is not None:
            seconds.append(found)
    return record, seconds or [0.0]


def _summarise(rounds: list[tuple[RoundRecord, list[float]]], parallel_sites: bool) -> dict[str, Any]:
    per_round = []
    for record, train in rounds:
        local = max(train) if parallel_sites else sum(train)
        per_round.append(
            {
                "round": record.round,
                "wall_s": round(record.wall_seconds, 3),
                "site_train_s": [round(value, 3) for value in train],
                "overhead_s": round(record.wall_seconds - local, 3),
                "bytes_up_per_site": sorted(counts.up for counts in record.bytes.values()),
                "bytes_down_per_site": sorted(counts.down for counts in record.bytes.values()),
                "accepted": record.fit.accepted,
            }
        )
    return {
        "rounds": per_round,
        "median_overhead_s": statistics.median(entry["overhead_s"] for entry in per_round),
        "median_bytes_up_per_site": statistics.median(b for entry in per_round for b in entry["bytes_up_per_site"]),
    }


def run_inprocess(secagg: bool, rounds: int, n_sites: int, workdir: Path) -> list[tuple[RoundRecord, list[float]]]:
    from flwr.app import Context, RecordDict

    from bcvlm_client.client_app import build_client_app
    from bcvlm_server.run_records import RunRecords
    from bcvlm_server.server_app import run_federation
    from bcvlm_server.server_config import load_server_config
    from bcvlm_testing.federation_sites import make_site, server_model_factory, site_trainer_factory
    from bcvlm_testing.inprocess_grid import InProcessGrid

    root = workdir / ("secagg" if secagg else "plain")
    sites = {
        10 + k: make_site(root, f"site{k}", n_train=4, n_test=4, seed=k, privacy={"enabled": False})
        for k in range(n_sites)
    }
    config = root / "server.yaml"
    config.write_text(yaml.safe_dump({**_federation(secagg, rounds, n_sites), "run_dir": str(root / "run")}))
    trainers: dict[str, Any] = {}
    app = build_client_app(trainer_factory=lambda site: trainers.setdefault(site.site_id, site_trainer_factory(site)))
    grid = InProcessGrid(app, {node: {"site-config": str(path)} for node, path in sites.items()})
    cfg = load_server_config(config)
    run_federation(
        grid,
        Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={}),
        cfg,
        root / "run",
        False,
        server_model_factory,
    )
    records = RunRecords(root / "run")
    return [with_site_train_seconds(records.load_metrics(r), sites.values()) for r in range(1, rounds + 1)]


def run_loopback(secagg: bool, rounds: int, n_sites: int, workdir: Path) -> list[tuple[RoundRecord, list[float]]]:
    from bcvlm_testing.loopback import LoopbackFederation, wait_until

    root = workdir / ("loopback_secagg" if secagg else "loopback_plain")
    root.mkdir(parents=True, exist_ok=True)
    federation = LoopbackFederation(
        root,
        tuple(f"site{k}" for k in range(n_sites)),
        _federation(secagg, rounds, n_sites),
        site_privacy={"enabled": False},
    )
    try:
        server = federation.start_server()
        for site_yaml in federation.site_yamls.values():
            federation.start_client(site_yaml)
        wait_until(
            lambda: federation.completed_rounds() >= rounds or server.poll() is not None, 1800.0, f"{rounds} rounds"
        )
        if federation.completed_rounds() < rounds:
            raise RuntimeError(
                f"the loopback run ended after {federation.completed_rounds()} rounds; see "
                f"{root / 'server.out'} and {federation.run_dir / 'logs'}"
            )
        return [
            with_site_train_seconds(federation.round_metrics(r), federation.site_yamls.values())
            for r in range(1, rounds + 1)
        ]
    finally:
        federation.stop_all()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--transport", choices=("inprocess", "loopback"), default="inprocess")
    parser.add_argument("--modes", default="plain,secagg", help="comma list of plain,secagg")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)
    from bcvlm_model.cpu_memory import keep_freed_memory

    keep_freed_memory()  # as every bcvlm command does (see bcvlm_model/cpu_memory.py)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bcvlm_fedbench_"))
    from bcvlm_server.server_config import load_server_config
    from bcvlm_testing.federation_sites import server_model_factory

    probe = workdir / "probe.yaml"
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text(yaml.safe_dump({**_federation(False, 1, args.sites), "run_dir": str(workdir / "probe")}))
    model = server_model_factory(load_server_config(probe))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    report: dict[str, Any] = {
        "transport": args.transport,
        "sites": args.sites,
        "rounds": args.rounds,
        "federated_parameters": int(trainable),
        "machine": os.uname().nodename,
        "cpu_count": os.cpu_count(),
        "results": {},
    }
    runner = run_inprocess if args.transport == "inprocess" else run_loopback
    for mode in args.modes.split(","):
        started = time.perf_counter()
        rounds = runner(mode == "secagg", args.rounds, args.sites, workdir)
        summary = _summarise(rounds, parallel_sites=args.transport == "loopback")
        summary["total_s"] = round(time.perf_counter() - started, 1)
        report["results"][mode] = summary
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
