"""Executor tests: a Flower SuperExec task request (`ExecutionSpec`) as the SuperExec loop hands it to an executor, and
what a task forked by an executor starts with."""

from __future__ import annotations

import subprocess
import sys
from typing import Sequence

from flwr.supercore.constant import TaskType
from flwr.supercore.superexec.executor import ExecutionSpec


def execution_spec(task_type: TaskType, insecure: bool = False) -> ExecutionSpec:
    """Task 7 on Runtime API 127.0.0.1:9094, parent pid 1234, TLS with /certs/ca.crt unless `insecure`."""
    return ExecutionSpec(
        task_type=task_type,
        runtime_api_address="127.0.0.1:9094",
        token="secret-token",
        insecure=insecure,
        root_certificates_path=None if insecure else "/certs/ca.crt",
        runtime_dependency_install=False,
        parent_pid=1234,
        suppress_output=False,
        task_id=7,
    )


def modules_loaded_in_a_forked_task(setup: str, modules: Sequence[str], timeout_s: float = 240.0) -> bool:
    """Whether every one of `modules` is loaded when a task forked by `executor.tasks` starts, `executor` being what
    the Python code `setup` defines; checked in a fresh interpreter, because multiprocessing runs one forkserver per
    process and the first to start it decides what it preloads."""
    report = f"import os, sys; os._exit(0 if set({list(modules)!r}) <= set(sys.modules) else 3)"
    script = "\n".join(
        [
            setup,
            f"task = executor.tasks.context.Process(target=exec, args=({report!r},))",
            "task.start()",
            f"task.join(timeout={timeout_s})",
            "raise SystemExit(task.exitcode)",
        ]
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout_s + 60)
    if done.returncode not in (0, 3):
        raise RuntimeError(f"the forked task did not report (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return done.returncode == 0
