"""The secure evaluation pass names rounds as the run does: a resumed run's Flower rounds start again at 1."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from bcvlm_server.secure_evaluation import EvaluationAsSecureSum


class ResumedStrategy:
    """A strategy resumed after round `round_offset`: it maps Flower's round to the run's and records what it got."""

    def __init__(self, round_offset: int) -> None:
        self.round_offset = round_offset
        self.closed: list[int] = []

    def absolute_round(self, server_round: int) -> int:
        return self.round_offset + int(server_round)

    def aggregate_secure_evaluation(self, server_round: int, *_: Any, **__: Any) -> None:
        self.closed.append(server_round)


def test_a_resumed_runs_secure_evaluation_is_logged_under_the_runs_round(caplog: pytest.LogCaptureFixture) -> None:
    strategy = ResumedStrategy(round_offset=1)
    view = EvaluationAsSecureSum(strategy, count_scale=1.0, weight=1)  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="bcvlm_server.secure_evaluation"):
        view.aggregate_fit(1, [], [RuntimeError("site lost")])
    assert "round 2: evaluation summed securely over 0 site(s), 1 failure(s)" in caplog.text
    assert strategy.closed == [1]  # the strategy itself maps Flower's round 1 to the run's round 2
