"""`bcvlm simulate` (Hydra config + `key=value` overrides) and `bcvlm demo` (the main job on the synthetic default)."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Sequence

from bcvlm_client.flower_process import apply_flower_env_defaults
from bcvlm_model.config_io import ConfigError, config_to_yaml


def _parser(prog: str, default_config: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides key=value, e.g. server.rounds=5 split.kind=iid")
    parser.add_argument(
        "--config-name",
        default=default_config,
        help=f"config file (without .yaml) in --config-dir (default: {default_config})",
    )
    parser.add_argument(
        "--config-dir", default=None, help="folder of Hydra configs (default: the packaged bcvlm_simulation/conf)"
    )
    parser.add_argument("--print-config", action="store_true", help="print the composed config and exit")
    return parser


def _run(prog: str, default_config: str, description: str, argv: Sequence[str]) -> int:
    args = _parser(prog, default_config, description).parse_args(list(argv))
    apply_flower_env_defaults()  # Flower runs in this process (and Ray's workers inherit it)
    from bcvlm_simulation.config import load_simulation_config

    try:
        cfg = load_simulation_config(args.config_name, args.overrides, args.config_dir)
    except ConfigError as exc:
        print(f"{prog}: config error: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(config_to_yaml(cfg))
        return 0
    from bcvlm_simulation.runner import SimulationError, run_simulation_job

    # SIGTERM -> SystemExit, so `finally` blocks run and Ray's worker processes are shut down, not orphaned.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        run_simulation_job(cfg)
    except (SimulationError, FileNotFoundError, ConfigError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    return 0


def simulate(argv: Sequence[str]) -> int:
    """`bcvlm simulate [key=value ...]`: virtual sites from a manifest, federated run, baselines, report."""
    return _run("bcvlm simulate", "simulate", simulate.__doc__ or "", argv)


def demo(argv: Sequence[str]) -> int:
    """`bcvlm demo [key=value ...]`: the main job on the embedded synthetic cohort (config `demo`)."""
    return _run("bcvlm demo", "demo", demo.__doc__ or "", argv)
