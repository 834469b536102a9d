"""follow_run: a status query that fails for a moment (SQLite busy on a loaded center) does not end a healthy run;
failures in a row do, with the error; once the last round is written the status is asked at once. register_sites:
a few registrations at a time, reported in the config's order."""

from __future__ import annotations

import threading
import time

import pytest

from bcvlm_client.flower_process import FlowerProcessError
from bcvlm_server.superlink import RunStatus, follow_run, register_sites


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


class RegisteringControl:
    """`register_site` that takes `delay_s`, records how many calls overlapped, and fails for the sites in `refused`."""

    def __init__(self, delay_s: float, refused: frozenset[str] = frozenset()) -> None:
        self.delay_s = delay_s
        self.refused = refused
        self.lock = threading.Lock()
        self.running = 0
        self.most_at_once = 0

    def register_site(self, public_key: str, name: str) -> int | None:
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            time.sleep(self.delay_s)
            if name in self.refused:
                raise FlowerProcessError(f"registering site '{name}' ({public_key}) failed: bad key")
            return None if name == "known" else 100 + int(name[-1])
        finally:
            with self.lock:
                self.running -= 1


SITES = [("site1", "k1.pub"), ("known", "k.pub"), ("site3", "k3.pub"), ("site4", "k4.pub"), ("site5", "k5.pub")]


def test_sites_are_registered_a_few_at_a_time_and_reported_in_config_order() -> None:
    control = RegisteringControl(delay_s=0.5)
    registered = list(register_sites(control, SITES, workers=3))  # type: ignore[arg-type]
    assert registered == [("site1", 101), ("known", None), ("site3", 103), ("site4", 104), ("site5", 105)]
    assert control.most_at_once == 3


def test_a_refused_key_is_raised_after_the_sites_before_it_are_reported() -> None:
    control = RegisteringControl(delay_s=0.0, refused=frozenset({"site3"}))
    reported: list[str] = []
    with pytest.raises(FlowerProcessError, match="site3"):
        for name, _ in register_sites(control, SITES, workers=2):  # type: ignore[arg-type]
            reported.append(name)
    assert reported == ["site1", "known"]
