"""The site's SuperExec starts each ClientApp task as a fresh process forked from a forkserver that preloaded torch
and the model code, with the arguments Flower gives `flwr-clientapp` plus the site config."""

from __future__ import annotations

from pathlib import Path

import pytest
from flwr.supercore.constant import TaskType
from flwr.supercore.superexec.executor import ExecutionSpec
from flwr.supercore.superexec.executor.types import LaunchResultStatus

from bcvlm_client.site_superexec import ApprovingClientAppExecutor, task_arguments, task_process_context

CHILD_REPORT = (
    "import os, sys; os._exit(0 if {'torch', 'timm', 'bcvlm_client.site_training'} <= set(sys.modules) else 3)"
)


def spec(insecure: bool, task_type: TaskType = TaskType.CLIENT_APP) -> ExecutionSpec:
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


def test_a_task_gets_flowers_clientapp_arguments_and_the_site_config() -> None:
    assert task_arguments(spec(insecure=False), Path("/site/effective.yaml")) == [
        "--runtime-api-address",
        "127.0.0.1:9094",
        "--token",
        "secret-token",
        "--site-config",
        "/site/effective.yaml",
        "--root-certificates",
        "/certs/ca.crt",
        "--parent-pid",
        "1234",
    ]
    assert "--insecure" in task_arguments(spec(insecure=True), Path("/site/effective.yaml"))


def test_only_clientapp_tasks_are_launched(tmp_path: Path) -> None:
    result = ApprovingClientAppExecutor(tmp_path / "site.yaml").launch(spec(False, TaskType.SERVER_APP))
    assert result.status == LaunchResultStatus.FAILED
    assert "only ClientApp tasks" in result.message


@pytest.mark.timeout(300)
def test_a_task_process_starts_with_torch_and_the_model_code_loaded() -> None:
    task = task_process_context().Process(target=exec, args=(CHILD_REPORT,))
    task.start()
    task.join(timeout=240)
    assert task.exitcode == 0
