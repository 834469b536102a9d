"""follow_run: a status query that fails for a moment (SQLite busy on a loaded center) does not end a healthy run;
failures in a row do, with the error; once the run's last round is recorded its end is asked for at once."""

from __future__ import annotations

import time

import pytest

from bcvlm_client.flower_process import FlowerProcessError
from bcvlm_server.superlink import RunStatus, follow_run


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


def test_the_end_of_a_run_is_asked_for_soon_once_its_last_round_is_recorded() -> None:
    control = ScriptedControl(["running", "running", "finished:completed"])
    ticks: list[int] = []
    status = follow_run(
        control,  # type: ignore[arg-type]
        7,
        timeout_s=60,
        poll_s=3600,  # without `ending`, the first status query would come an hour later
        on_tick=lambda: ticks.append(1),
        ending=lambda: len(ticks) >= 3,
        ending_poll_s=0.0,
        tick_s=0.001,
    )
    assert status.completed and control.script == []
    assert len(ticks) == 5  # three ticks until the last round is on disk, then one per status query


def test_a_run_that_is_not_ending_waits_for_the_poll() -> None:
    control = ScriptedControl(["finished:completed"])
    started = time.monotonic()
    follow_run(
        control,  # type: ignore[arg-type]
        7,
        timeout_s=60,
        poll_s=0.3,
        ending=lambda: False,
        ending_poll_s=0.0,
        tick_s=0.001,
    )
    assert time.monotonic() - started >= 0.3
