"""The center's SuperExec starts Flower's loop again after a server-side error (so its ServerApp child survives),
and still stops on a client-side one; it forks the ServerApp from a preloaded forkserver with Flower's arguments."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from flwr.supercore.constant import TaskType
from flwr.supercore.superexec.executor import ExecutionSpec, subprocess_executor
from flwr.supercore.superexec.executor.subprocess_executor import SubprocessExecutor

from bcvlm_client.task_forkserver import flower_task_arguments
from bcvlm_server.center_superexec import ForkedServerAppExecutor, main
from bcvlm_testing.flower_tasks import execution_spec, modules_loaded_in_a_forked_task


def _status_error(code: int) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "https://127.0.0.1:1/v1/runtime/acquire-task")
    return httpx.HTTPStatusError(f"{code}", request=request, response=httpx.Response(code, request=request))


def _argv(tmp_path: Path) -> list[str]:
    secret = tmp_path / "superexec_auth.secret"
    secret.write_text("a" * 64)
    secret.chmod(0o600)
    return [
        "--runtime-api-address",
        "127.0.0.1:1",
        "--root-certificates",
        str(tmp_path / "ca.crt"),
        "--superexec-auth-secret-file",
        str(secret),
    ]


def test_a_server_error_starts_the_same_loop_again(tmp_path: Path) -> None:
    calls: list[dict] = []

    def run(**kwargs) -> None:  # noqa: ANN003 - Flower's run_superexec keywords
        calls.append(kwargs)
        if len(calls) < 3:
            raise _status_error(500)  # "database is locked" at the SuperLink

    main(_argv(tmp_path), run=run, pause_s=0)
    assert len(calls) == 3 and calls[0] == calls[2]
    assert calls[0]["superexec_auth_secret"] and calls[0]["runtime_dependency_install"] is False


def test_a_client_error_ends_it(tmp_path: Path) -> None:
    def run(**kwargs) -> None:  # noqa: ANN003
        raise _status_error(401)

    with pytest.raises(httpx.HTTPStatusError):
        main(_argv(tmp_path), run=run, pause_s=0)


def _flower_command(spec: ExecutionSpec, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The command line Flower's own SubprocessExecutor would start for `spec`."""
    started: list[list[str]] = []
    monkeypatch.setattr(subprocess_executor.subprocess, "Popen", lambda args, **_: started.append(list(args)))
    SubprocessExecutor().launch(spec)
    return started[0]


@pytest.mark.parametrize("insecure", [False, True])
def test_a_serverapp_gets_the_arguments_flowers_executor_gives_it(
    insecure: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = execution_spec(TaskType.SERVER_APP, insecure)
    assert ["flwr-serverapp", *flower_task_arguments(spec)] == _flower_command(spec, monkeypatch)


def test_other_task_types_go_to_flowers_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[list[str]] = []
    monkeypatch.setattr(subprocess_executor.subprocess, "Popen", lambda args, **_: started.append(list(args)))
    ForkedServerAppExecutor().launch(execution_spec(TaskType.SIMULATION))
    assert started and started[0][0] == "flwr-simulation"


@pytest.mark.timeout(400)
def test_a_serverapp_process_starts_with_the_server_app_and_torch_loaded() -> None:
    setup = "from bcvlm_server.center_superexec import ForkedServerAppExecutor\nexecutor = ForkedServerAppExecutor()"
    assert modules_loaded_in_a_forked_task(setup, ["torch", "bcvlm_server.server_app"])
