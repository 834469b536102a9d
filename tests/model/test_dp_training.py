"""DP-SGD arithmetic: noise from a budget, accountant history round trip, projected epsilon."""
from __future__ import annotations

import json
import math

import pytest

from bcvlm_model.privacy.dp_training import (
    DPTrainState,
    epsilon_of_history,
    noise_multiplier_for_budget,
    poisson_sample_rate,
    projected_epsilon,
)


def test_noise_multiplier_spends_the_target_over_the_planned_steps() -> None:
    sample_rate, steps, delta = 0.05, 60, 1e-5
    noise = noise_multiplier_for_budget(4.0, delta, sample_rate, steps)
    spent = epsilon_of_history({"mechanism": "rdp", "history": [[noise, sample_rate, steps]]}, delta)
    assert 3.9 <= spent <= 4.0
    # more steps at the same noise overshoot; a smaller target needs more noise
    assert epsilon_of_history({"mechanism": "rdp", "history": [[noise, sample_rate, 2 * steps]]}, delta) > 4.0
    assert noise_multiplier_for_budget(2.0, delta, sample_rate, steps) > noise


def test_history_accumulates_and_round_trips_through_json() -> None:
    delta, noise, rate = 1e-5, 1.1, 0.1
    one_round = {"mechanism": "rdp", "history": [[noise, rate, 10]]}
    two_rounds = json.loads(json.dumps({"mechanism": "rdp", "history": [[noise, rate, 10], [noise, rate, 10]]}))
    first, second = epsilon_of_history(one_round, delta), epsilon_of_history(two_rounds, delta)
    assert 0 < first < second
    assert projected_epsilon(one_round, delta, "rdp", noise, rate, 10) == pytest.approx(second)
    assert epsilon_of_history(None, delta) == 0.0


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="target_epsilon"):
        noise_multiplier_for_budget(0.0, 1e-5, 0.1, 10)
    with pytest.raises(ValueError, match="total_steps"):
        noise_multiplier_for_budget(1.0, 1e-5, 0.1, 0)
    with pytest.raises(ValueError, match="accountant"):
        DPTrainState(1.0, 1.0, 1e-5, accountant="moments")
    with pytest.raises(ValueError, match="mechanism|accountant"):
        epsilon_of_history({"mechanism": "prv", "history": [[1.0, 0.1, 1]]}, 1e-5, "rdp")
    assert poisson_sample_rate(10, 4) == pytest.approx(1 / 3)
    assert math.isclose(poisson_sample_rate(8, 4), 0.5)
