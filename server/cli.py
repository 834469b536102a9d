"""`bcvlm-server --config cfg.yaml` / `--resume RUN_DIR` / `status RUN_DIR`: a bcvlm federation's coordinating center."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Sequence

from bcvlm_client.flower_process import FlowerProcessError
from bcvlm_client.round_record import RoundRecordError
from bcvlm_model.config_io import ConfigError
from bcvlm_model.cpu_memory import keep_freed_memory
from bcvlm_server.deployment import RunDirectory, load_for_resume, run_deployment
from bcvlm_server.deployment_config import load_deployment_config
from bcvlm_server.run_status import failed_rounds, render_status

FAILED_ROUNDS_EXIT_CODE = 3
"""The Flower run finished, but in at least one round no or too few sites trained."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bcvlm-server",
        description="Start the SuperLink (TLS + SuperNode authentication), register the sites, run the federation. "
        "`bcvlm-server status RUN_DIR` shows each round's per-site outcomes.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="server deployment YAML (see site_configs/server.example.yaml)")
    source.add_argument(
        "--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR after its last completed round"
    )
    parser.add_argument("--check", action="store_true", help="validate the config and exit")
    parser.add_argument("overrides", nargs="*", help="dotlist overrides, e.g. federation.rounds=5")
    return parser


def status_main(argv: Sequence[str]) -> int:
    """`bcvlm-server status RUN_DIR`: every completed round with each site's outcome; 3 if a round failed."""
    parser = argparse.ArgumentParser(
        prog="bcvlm-server status", description="Per-round, per-site status of a run directory."
    )
    parser.add_argument("run_dir", metavar="RUN_DIR")
    args = parser.parse_args(list(argv))
    if not (Path(args.run_dir) / "deployment.yaml").is_file() and not (Path(args.run_dir) / "state.json").is_file():
        print(f"bcvlm-server: {args.run_dir} is not a bcvlm run directory", file=sys.stderr)
        return 2
    try:
        print(render_status(args.run_dir))
        return FAILED_ROUNDS_EXIT_CODE if failed_rounds(args.run_dir) else 0
    except RoundRecordError as exc:
        print(f"bcvlm-server: {exc}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `bcvlm-server`; exit code 0 when the run completed and every round trained."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] == ["status"]:
        return status_main(arguments[1:])
    keep_freed_memory()  # inherited by the Flower processes this starts
    args = build_parser().parse_args(arguments)
    try:
        if args.resume:
            if args.overrides:
                raise ConfigError("--resume continues a run with its recorded config: overrides are not accepted")
            cfg = load_for_resume(args.resume)
        else:
            cfg = load_deployment_config(args.config, tuple(args.overrides))
    except ConfigError as exc:
        print(f"bcvlm-server: invalid config: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(f"config OK: {len(cfg.sites)} sites, run directory {cfg.federation.run_dir}")
        return 0

    def _stop(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    first_round = RunDirectory(Path(cfg.federation.run_dir).resolve()).last_completed_round() + 1
    try:
        status = run_deployment(cfg, resume=bool(args.resume))
    except ConfigError as exc:
        print(f"bcvlm-server: {exc}", file=sys.stderr)
        return 2
    except FlowerProcessError as exc:
        print(f"bcvlm-server: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"bcvlm-server: stopped; continue with `bcvlm-server --resume {cfg.federation.run_dir}`", file=sys.stderr)
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not status.completed:
        print(
            f"bcvlm-server: run ended with status {status.status}; see {cfg.federation.run_dir}/logs", file=sys.stderr
        )
        return 1
    failed = failed_rounds(cfg.federation.run_dir, first_round)
    if failed:
        print(f"bcvlm-server: {len(failed)} round(s) did not train:", file=sys.stderr)
        for record in failed:
            print(f"  round {record.round}: {record.failure}", file=sys.stderr)
        print(f"  per-site status: bcvlm-server status {cfg.federation.run_dir}", file=sys.stderr)
        return FAILED_ROUNDS_EXIT_CODE
    print(f"run completed; results in {cfg.federation.run_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
