"""The site's own SuperExec: Flower's task loop (`run_superexec`) with an executor that starts only ClientApp tasks,
each through `bcvlm_client.approved_clientapp` (the FAB check) instead of `flwr-clientapp`.

`bcvlm-client` runs the SuperNode with `--isolation process` and starts this process next to it once the SuperLink
admitted the SuperNode, so no process of Flower's own choosing ever runs a run's app at the site. Each task is a fresh
process forked from a forkserver that imported torch and the model code when this process started
(`bcvlm_client.task_forkserver`): a SecAgg+ round is eight tasks per site.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from flwr.supercore.constant import TaskType
from flwr.supercore.superexec import run_superexec as flower_superexec
from flwr.supercore.superexec.executor import ExecutionSpec, LaunchResult

from bcvlm_client import approved_clientapp
from bcvlm_client.task_forkserver import ForkedTasks, flower_task_arguments, use_in_flower_superexec

PRELOADED_MODULES: tuple[str, ...] = (
    "bcvlm_client.approved_clientapp",
    "bcvlm_client.client_app",
    "bcvlm_client.site_config",
    "bcvlm_client.site_training",
    "bcvlm_client.process_model",
    "bcvlm_model.model",
    "timm",
    "transformers.models.bert.modeling_bert",
)
"""What a ClientApp task needs: the FAB check, the ClientApp, `SiteTrainer`, the model and its encoders' libraries."""


class ApprovingClientAppExecutor:
    """A Flower executor (the `Executor` protocol of flwr.supercore.superexec.executor) for ClientApp tasks only."""

    def __init__(self, site_config: Path) -> None:
        self.site_config = site_config
        self.tasks = ForkedTasks(PRELOADED_MODULES)

    def get_eligible_capacity(self, supported_task_types: set[TaskType], **_: Any) -> tuple[set[TaskType], set[str]]:
        """Ask the SuperNode for ClientApp tasks only: a site runs nothing else."""
        return supported_task_types & {TaskType.CLIENT_APP}, set()

    def wait_for_capacity(self, *_: Any, **__: Any) -> None:
        """No capacity gate: one local process per task, as Flower's SubprocessExecutor."""

    def launch(self, spec: ExecutionSpec) -> LaunchResult:
        if spec.task_type != TaskType.CLIENT_APP:
            return LaunchResult.failed(f"this site runs only ClientApp tasks, not {spec.task_type}")
        self.tasks.start(approved_clientapp.main, task_arguments(spec, self.site_config), name="bcvlm-clientapp")
        return LaunchResult.accepted()

    def reconcile(self) -> None:
        """Reap finished task processes."""
        self.tasks.reap()

    def close(self) -> None:
        """Nothing to release."""


def task_arguments(spec: ExecutionSpec, site_config: Path) -> list[str]:
    """`approved_clientapp`'s arguments for one task: those Flower gives `flwr-clientapp`, plus the site config."""
    return [*flower_task_arguments(spec), "--site-config", str(site_config)]


def command(runtime_address: str, site_config: Path, secret_file: Path, supernode_pid: int) -> list[str]:
    """The command line `bcvlm-client` starts this process with."""
    return [
        sys.executable,
        "-m",
        "bcvlm_client.site_superexec",
        "--runtime-api-address",
        runtime_address,
        "--site-config",
        str(site_config),
        "--superexec-auth-secret-file",
        str(secret_file),
        "--parent-pid",
        str(supernode_pid),
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bcvlm_client.site_superexec",
        description="The site's SuperExec: ClientApp tasks only, approved FABs only.",
    )
    parser.add_argument("--runtime-api-address", required=True, help="the SuperNode's Runtime API (127.0.0.1:PORT)")
    parser.add_argument("--site-config", required=True, type=Path, help="the effective site config YAML")
    parser.add_argument("--superexec-auth-secret-file", required=True, type=Path)
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process (the SuperNode) exits")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Run Flower's SuperExec loop with the approving executor (plain HTTP on loopback, like Flower's own)."""
    args = build_parser().parse_args(argv)
    executor = ApprovingClientAppExecutor(args.site_config.resolve())
    use_in_flower_superexec(executor)
    executor.tasks.start_forkserver()  # its imports run while the site waits for its first message
    flower_superexec.run_superexec(
        runtime_api_address=args.runtime_api_address,
        insecure=True,
        superexec_auth_secret=args.superexec_auth_secret_file.read_bytes(),
        parent_pid=args.parent_pid,
        runtime_dependency_install=False,
    )


if __name__ == "__main__":
    main()
