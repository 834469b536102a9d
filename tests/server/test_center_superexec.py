"""The center's SuperExec starts Flower's loop again after a server-side error (so its ServerApp child survives),
and still stops on a client-side one."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bcvlm_server.center_superexec import main


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
