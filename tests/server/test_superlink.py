"""follow_run: a status query that fails for a moment (SQLite busy on a loaded center) does not end a healthy run;
failures in a row do, with the error; once the last round is written the status is asked at once. FlowerControl:
a bad site key or an unreachable SuperLink is a FlowerProcessError that names what failed."""

from __future__ import annotations

from pathlib import Path

import pytest

from bcvlm_client.flower_process import FlowerProcessError, free_port
from bcvlm_server.superlink import FlowerControl, RunStatus, follow_run
from bcvlm_testing.deployment_files import loopback_certificates


class ScriptedControl:
    """Answers `run_status` from a script: an exception instance is raised, a status string is returned."""

    def __init__(self, script: list[object]) -> None:
        self.script = list(script)
        self.stopped: list[int] = []

    def run_status(self, run_id: int) -> RunStatus:
        answer = self.script.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return RunStatus(run_id=run_id, status=str(answer), details={})

    def stop_run(self, run_id: int) -> None:
        self.stopped.append(run_id)


def _busy() -> FlowerProcessError:
    return FlowerProcessError("status of run 7 unavailable: Internal server error.")


def test_a_passing_status_failure_is_asked_again() -> None:
    control = ScriptedControl(["running", _busy(), _busy(), "finished:completed"])
    status = follow_run(control, 7, timeout_s=60, poll_s=0)  # type: ignore[arg-type]
    assert status.completed and not control.stopped


def test_status_failures_in_a_row_end_it_with_the_error() -> None:
    control = ScriptedControl(["running", _busy(), _busy(), _busy(), "finished:completed"])
    with pytest.raises(FlowerProcessError, match="Internal server error"):
        follow_run(control, 7, timeout_s=60, poll_s=0, max_status_failures=3)  # type: ignore[arg-type]


def test_a_run_whose_last_round_is_written_is_asked_at_once_not_at_the_next_slow_poll() -> None:
    control = ScriptedControl(["running", "finished:completed"])
    ticks: list[int] = []

    def last_round_written() -> bool:
        ticks.append(1)
        return True

    status = follow_run(control, 7, timeout_s=60, poll_s=5, on_tick=last_round_written, ending_poll_s=0)  # type: ignore[arg-type]
    assert status.completed
    assert len(ticks) == 1  # one second of waiting, not the five of `poll_s`


def test_a_site_key_that_is_not_an_ec_public_key_is_refused_before_the_superlink_is_asked(tmp_path: Path) -> None:
    certs = loopback_certificates(tmp_path / "certs", generate_site_keys=["alpha"])
    control = FlowerControl(tmp_path / "cli", f"127.0.0.1:{free_port()}", certs.ca_cert)  # nothing listens there
    with pytest.raises(FlowerProcessError, match="holds a PRIVATE key"):
        control.register_site(certs.site_private_key("alpha"), "alpha")


def test_an_unreachable_superlink_is_a_flower_process_error_naming_the_site(tmp_path: Path) -> None:
    certs = loopback_certificates(tmp_path / "certs", generate_site_keys=["alpha"])
    control = FlowerControl(tmp_path / "cli", f"127.0.0.1:{free_port()}", certs.ca_cert)  # nothing listens there
    with pytest.raises(FlowerProcessError, match="registering site 'alpha'.*ConnectError"):
        control.register_site(certs.site_public_key("alpha"), "alpha")
    with pytest.raises(FlowerProcessError, match="SuperNode list unavailable"):
        control.online_nodes()
