"""Fresh task processes forked from a forkserver that imported the task's heavy modules once.

Flower 1.42 runs every task (each ClientApp message, each ServerApp run) in a fresh process, and a fresh interpreter
spends most of a short task importing torch, timm, transformers and the model code. A multiprocessing forkserver
imports them once, when the SuperExec starts; each task is still a fresh process of its own, forked from it with
those modules loaded and their pages shared. The forkserver runs no torch code and starts no threads, so forking it
is safe: torch's thread pools start in the task.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing import forkserver
from multiprocessing.context import ForkServerContext
from typing import Any, Callable, Sequence

from flwr.supercore.superexec import run_superexec as flower_superexec
from flwr.supercore.superexec.executor import ExecutionSpec


class ForkedTasks:
    """Starts `target(arguments)` in processes forked from a forkserver that preloaded `modules`.

    A module that fails to import in the forkserver is left for the task to import, and to report. multiprocessing
    runs one forkserver per process: the first ForkedTasks to start it decides what it preloads (a SuperExec has
    one)."""

    def __init__(self, modules: Sequence[str]) -> None:
        self.context: ForkServerContext = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(list(modules))

    def start_forkserver(self) -> None:
        """Start the forkserver now; its imports run while the caller goes on (the first task waits for them)."""
        forkserver.ensure_running()

    def start(self, target: Callable[[list[str]], object], arguments: list[str], name: str) -> None:
        """Start one task; finished tasks are reaped first (their exit status and pipe released)."""
        self.reap()
        self.context.Process(target=target, args=(arguments,), name=name).start()

    @staticmethod
    def reap() -> None:
        """Collect the tasks that have ended."""
        multiprocessing.active_children()


def flower_task_arguments(spec: ExecutionSpec) -> list[str]:
    """The arguments Flower's own SubprocessExecutor gives a task's entry point (`flwr-clientapp`, `flwr-serverapp`)."""
    arguments = ["--runtime-api-address", spec.runtime_api_address, "--token", spec.token]
    if spec.insecure:
        arguments.append("--insecure")
    elif spec.root_certificates_path is not None:
        arguments += ["--root-certificates", spec.root_certificates_path]
    if spec.parent_pid is not None:
        arguments += ["--parent-pid", str(spec.parent_pid)]
    if spec.runtime_dependency_install:
        arguments.append("--allow-runtime-dependency-installation")
    return arguments


def use_in_flower_superexec(executor: Any) -> None:
    """Make Flower's SuperExec loop (`run_superexec`) launch its tasks through `executor` (it builds its executor
    through a module-level factory); exit, running nothing, where that factory is missing (another Flower version)."""
    if not hasattr(flower_superexec, "get_executor"):
        raise SystemExit("flwr.supercore.superexec.run_superexec has no get_executor: Flower version mismatch")
    flower_superexec.get_executor = lambda *_, **__: executor
