"""A Flower SuperExec task request (`ExecutionSpec`) as the SuperExec loop hands it to an executor, for executor tests."""

from __future__ import annotations

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
