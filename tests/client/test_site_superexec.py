"""The site's SuperExec starts each ClientApp task as a fresh process forked from a forkserver that preloaded torch
and the model code, with the arguments Flower gives `flwr-clientapp` plus the site config."""

from __future__ import annotations

from pathlib import Path

import pytest
from flwr.supercore.constant import TaskType
from flwr.supercore.superexec.executor.types import LaunchResultStatus

from bcvlm_client.site_superexec import ApprovingClientAppExecutor, task_arguments
from bcvlm_testing.flower_tasks import execution_spec, modules_loaded_in_a_forked_task


def test_a_task_gets_flowers_clientapp_arguments_and_the_site_config() -> None:
    assert task_arguments(execution_spec(TaskType.CLIENT_APP), Path("/site/effective.yaml")) == [
        "--runtime-api-address",
        "127.0.0.1:9094",
        "--token",
        "secret-token",
        "--root-certificates",
        "/certs/ca.crt",
        "--parent-pid",
        "1234",
        "--site-config",
        "/site/effective.yaml",
    ]
    assert "--insecure" in task_arguments(
        execution_spec(TaskType.CLIENT_APP, insecure=True), Path("/site/effective.yaml")
    )


def test_only_clientapp_tasks_are_launched(tmp_path: Path) -> None:
    result = ApprovingClientAppExecutor(tmp_path / "site.yaml").launch(execution_spec(TaskType.SERVER_APP))
    assert result.status == LaunchResultStatus.FAILED
    assert "only ClientApp tasks" in result.message


@pytest.mark.timeout(400)
def test_a_task_process_starts_with_torch_and_the_model_code_loaded() -> None:
    setup = "from pathlib import Path\nfrom bcvlm_client.site_superexec import ApprovingClientAppExecutor\n"
    setup += "executor = ApprovingClientAppExecutor(Path('site.yaml'))"
    assert modules_loaded_in_a_forked_task(setup, ["torch", "timm", "bcvlm_client.site_training"])
