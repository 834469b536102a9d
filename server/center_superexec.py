"""The center's SuperExec: Flower's `run_superexec` loop, entered again when a task request fails on the SuperLink's
side, so that the running ServerApp survives.

Flower 1.42's `flower-superexec` exits on the first HTTP 5xx from `acquire-task`, and every request it makes writes
a nonce into the SuperLink's SQLite state (5 s lock timeout): on a busy center one "database is locked" ends the
SuperExec, and its ServerApp (which watches its parent's pid) stops with it — the run fails mid-round. Here the same
loop (same executor, same auth secret, same arguments) starts over after a short pause in the same process, so the
ServerApp's parent stays alive. Client errors (4xx: a wrong secret, a refused certificate) still end it.

The ServerApp itself starts as a fresh process forked from a forkserver that imported torch, the model code and
`bcvlm_server.server_app` when the center started (`bcvlm_client.task_forkserver`), with the arguments Flower's own
executor gives `flwr-serverapp`; other task types go to Flower's executor unchanged.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import httpx
from flwr.supercore.auth.superexec_secret import load_superexec_auth_secret
from flwr.supercore.constant import TaskType
from flwr.supercore.superexec import run_superexec as flower_superexec
from flwr.supercore.superexec.executor import ExecutionSpec, LaunchResult
from flwr.supercore.superexec.executor.subprocess_executor import SubprocessExecutor
from flwr.superlink.cli.flwr_serverapp import flwr_serverapp

from bcvlm_client.task_forkserver import ForkedTasks, flower_task_arguments, use_in_flower_superexec

LOGGER = logging.getLogger("bcvlm_server.center_superexec")
RETRY_PAUSE_S = 3.0
MAX_RESTARTS = 200
"""Restarts in one center's lifetime before giving up (at one per lock timeout, far more than a run ever needs)."""
PRELOADED_MODULES: tuple[str, ...] = (
    "flwr.superlink.cli.flwr_serverapp",
    "bcvlm_server.server_app",
    "timm",
    "transformers.models.bert.modeling_bert",
)
"""What a ServerApp task imports: the ServerApp, its strategy and workflows, the model and its encoders' libraries."""


def run_serverapp_task(arguments: list[str]) -> None:
    """`flwr-serverapp ARGUMENTS` in this (forked) process: Flower's entry point reads its arguments from sys.argv."""
    sys.argv = ["flwr-serverapp", *arguments]
    flwr_serverapp()


class ForkedServerAppExecutor:
    """Flower's SubprocessExecutor, except that a ServerApp task is forked from the preloaded forkserver."""

    def __init__(self) -> None:
        self.tasks = ForkedTasks(PRELOADED_MODULES)
        self.others = SubprocessExecutor()

    def get_eligible_capacity(
        self, supported_task_types: set[TaskType], **kwargs: Any
    ) -> tuple[set[TaskType], set[str]]:
        return self.others.get_eligible_capacity(supported_task_types, **kwargs)

    def wait_for_capacity(self, *args: Any, **kwargs: Any) -> None:
        self.others.wait_for_capacity(*args, **kwargs)

    def launch(self, spec: ExecutionSpec) -> LaunchResult:
        if spec.task_type != TaskType.SERVER_APP:
            return self.others.launch(spec)
        self.tasks.start(run_serverapp_task, flower_task_arguments(spec), name="bcvlm-serverapp")
        return LaunchResult.accepted()

    def reconcile(self) -> None:
        self.tasks.reap()

    def close(self) -> None:
        self.others.close()


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
    argv: Sequence[str] | None = None, run: Callable[..., None] | None = None, pause_s: float = RETRY_PAUSE_S
) -> None:
    """Run Flower's SuperExec loop; after a server-side (5xx) failure, run it again, at most MAX_RESTARTS times."""
    args = build_parser().parse_args(argv)
    secret = load_superexec_auth_secret(secret_file=str(args.superexec_auth_secret_file))
    if run is None:  # Flower's own loop, launching the ServerApp from the preloaded forkserver
        executor = ForkedServerAppExecutor()
        use_in_flower_superexec(executor)
        executor.tasks.start_forkserver()  # its imports run while the center waits for its sites
        run = flower_superexec.run_superexec
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
