"""Privacy accounting: noise from a budget, accountant history round trip, projected epsilon; no torch to read a
ledger."""

from __future__ import annotations

import json
import math

import pytest

from bcvlm_model.privacy.accounting import (
    RDP_ALPHAS,
    epsilon_of_history,
    noise_multiplier_for_budget,
    noise_multiplier_for_remaining_budget,
    poisson_sample_rate,
    projected_epsilon,
)
from bcvlm_testing.module_imports import heavy_modules_loaded_by


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


@pytest.mark.parametrize(
    ("arguments", "named"), [((0.0, 1e-5, 0.1, 10), "target_epsilon"), ((1.0, 1e-5, 0.1, 0), "total_steps")]
)
def test_a_bad_budget_argument_is_named(arguments: tuple[float, float, float, int], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        noise_multiplier_for_budget(*arguments)


def test_a_history_of_another_accountant_is_refused() -> None:
    with pytest.raises(ValueError, match="mechanism|accountant"):
        epsilon_of_history({"mechanism": "prv", "history": [[1.0, 0.1, 1]]}, 1e-5, "rdp")


def test_the_sample_rate_is_one_over_the_number_of_batches() -> None:
    assert poisson_sample_rate(10, 4) == pytest.approx(1 / 3)
    assert math.isclose(poisson_sample_rate(8, 4), 0.5)


def test_remaining_budget_with_no_history_is_the_whole_budget() -> None:
    assert noise_multiplier_for_remaining_budget(None, 4.0, 1e-5, 0.05, 60) == pytest.approx(
        noise_multiplier_for_budget(4.0, 1e-5, 0.05, 60), rel=0.02
    )


def test_remaining_budget_noise_spends_what_is_left_and_no_more() -> None:
    delta, rate, steps = 1e-5, 0.05, 30
    history = {"mechanism": "rdp", "history": [[1.5, rate, steps]]}  # a run that spent part of the budget
    spent = epsilon_of_history(history, delta)
    assert 0 < spent < 4.0
    sigma = noise_multiplier_for_remaining_budget(history, 4.0, delta, rate, 2 * steps)
    assert sigma is not None
    assert projected_epsilon(history, delta, "rdp", sigma, rate, 2 * steps) <= 4.0
    assert projected_epsilon(history, delta, "rdp", sigma * 0.99, rate, 2 * steps) > 4.0  # no budget left unused


def test_a_planned_run_keeps_its_noise_from_round_to_round() -> None:
    delta, rate, steps, rounds = 1e-5, 0.05, 20, 4
    planned = noise_multiplier_for_budget(4.0, delta, rate, rounds * steps)
    after_one = {"mechanism": "rdp", "history": [[planned, rate, steps]]}
    assert noise_multiplier_for_remaining_budget(after_one, 4.0, delta, rate, (rounds - 1) * steps) == pytest.approx(
        planned, rel=0.01
    )


def test_a_spent_budget_has_no_noise_level() -> None:
    history = {"mechanism": "rdp", "history": [[0.5, 0.1, 200]]}
    assert epsilon_of_history(history, 1e-5) > 4.0
    assert noise_multiplier_for_remaining_budget(history, 4.0, 1e-5, 0.1, 10) is None


def test_a_budget_left_only_for_useless_noise_counts_as_spent() -> None:
    delta, rate = 1e-5, 0.1
    nearly_all = noise_multiplier_for_remaining_budget(None, 4.0, delta, 1.0, 1, relative_tolerance=1e-9)
    history = {"mechanism": "rdp", "history": [[nearly_all, 1.0, 1]]}
    assert 3.99 < epsilon_of_history(history, delta) <= 4.0
    assert noise_multiplier_for_remaining_budget(history, 4.0, delta, rate, 10) is None
    assert noise_multiplier_for_remaining_budget(history, 4.0, delta, rate, 10, max_noise_multiplier=1e6) is not None


def test_epsilon_of_a_history_is_what_opacus_rdp_accountant_reports() -> None:
    from opacus.accountants import RDPAccountant

    history = [(1.3, 0.25, 4), (0.9, 0.05, 20), (1.3, 0.25, 4)]
    accountant = RDPAccountant()
    accountant.history = list(history)
    expected = accountant.get_epsilon(1e-5, alphas=list(RDP_ALPHAS))
    state = {"mechanism": "rdp", "history": [list(entry) for entry in history]}
    assert epsilon_of_history(state, 1e-5) == pytest.approx(expected, rel=1e-12)


def test_importing_the_accounting_loads_neither_opacus_nor_torch() -> None:
    """The site's supervisor, `--check` and `--init-ledger` import it; Opacus (and torch) load only to compute."""
    assert heavy_modules_loaded_by("bcvlm_model.privacy.accounting") == []
