"""The center's SuperExec: Flower's `run_superexec` loop, entered again when a task request fails on the SuperLink's
side, so that the running ServerApp survives.

Flower 1.42's `flower-superexec` exits on the first HTTP 5xx from `acquire-task`, and every request it makes writes
a nonce into the SuperLink's SQLite state (5 s lock timeout): on a busy center one "database is locked" ends the
SuperExec, and its ServerApp (which watches its parent's pid) stops with it — the run fails mid-round. Here the same
loop (same executor, same auth secret, same arguments) starts over after a short pause in the same process, so the
ServerApp's parent stays alive. Client errors (4xx: a wrong secret, a refused certificate) still end it.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Callable, Sequence

import httpx
from flwr.supercore.auth.superexec_secret import load_superexec_auth_secret
from flwr.supercore.superexec.run_superexec import run_superexec

LOGGER = logging.getLogger("bcvlm_server.center_superexec")
RETRY_PAUSE_S = 3.0
MAX_RESTARTS = 200
"""Restarts in one center's lifetime before giving up (at one per lock timeout, far more than a run ever needs)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bcvlm_server.center_superexec",
        description="flower-superexec for bcvlm-server: survives passing SuperLink errors.",
    )
    parser.add_argument("--runtime-api-address", required=True)
    parser.add_argument("--root-certificates", required=True, type=Path)
    parser.add_argument("--superexec-auth-secret-file", required=True, type=Path)
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process (the SuperLink) exits")
    return parser


def main(
    argv: Sequence[str] | None = None, run: Callable[..., None] = run_superexec, pause_s: float = RETRY_PAUSE_S
) -> None:
    """Run Flower's SuperExec loop; after a server-side (5xx) failure, run it again, at most MAX_RESTARTS times."""
    args = build_parser().parse_args(argv)
    secret = load_superexec_auth_secret(secret_file=str(args.superexec_auth_secret_file))
    restarts = 0
    while True:
        try:
            run(
                runtime_api_address=args.runtime_api_address,
                insecure=False,
                root_certificates_path=str(args.root_certificates),
                superexec_auth_secret=secret,
                parent_pid=args.parent_pid,
                runtime_dependency_install=False,
            )
            return
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code < 500 or restarts >= MAX_RESTARTS:
                raise
            restarts += 1
            LOGGER.warning(
                "SuperLink answered %s to the SuperExec (restart %d of at most %d): %s",
                exc.response.status_code,
                restarts,
                MAX_RESTARTS,
                exc,
            )
            time.sleep(pause_s)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    main()
