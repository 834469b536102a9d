"""Privacy accounting of DP-SGD histories: epsilon spent, epsilon projected, noise for a budget (Opacus' RDP and PRV).

A history is plain data, [[noise_multiplier, sample_rate, steps], ...], as a site's privacy ledger stores it. Opacus
is imported inside the functions that compute: importing it loads torch (seconds), and the processes that only
read a ledger or a config (`bcvlm-client --check`, `--init-ledger`, the site's supervisor) never need it.

Accountants: RDP and PRV (`accountants.Accountant`).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import numpy as np

RDP_ALPHAS: tuple[float, ...] = (1.05, 1.1, 1.25, 1.5, 1.75, *range(2, 65), 80, 96, 128, 256)
"""RDP orders used everywhere (budget search, ledger, training). Opacus' default list has 99 fractional orders whose
evaluation dominates the cost; any order set gives a valid bound, this one is slightly looser and ~10x faster."""


def epsilon_kwargs(accountant: str) -> dict[str, Any]:
    """Keyword arguments of Opacus' `get_epsilon` for `accountant` (RDP at RDP_ALPHAS)."""
    return {"alphas": list(RDP_ALPHAS)} if accountant == "rdp" else {}


def poisson_sample_rate(num_examples: int, batch_size: int) -> float:
    """Sample rate Opacus uses for a loader of `num_examples` with `batch_size` (1 / number of batches)."""
    if num_examples <= 0 or batch_size <= 0:
        raise ValueError(f"need num_examples > 0 and batch_size > 0, got {num_examples}, {batch_size}")
    return 1.0 / math.ceil(num_examples / batch_size)


def noise_multiplier_for_budget(
    target_epsilon: float, delta: float, sample_rate: float, total_steps: int, accountant: str = "rdp"
) -> float:
    """Noise multiplier that spends exactly `target_epsilon` (at `delta`) over `total_steps` DP-SGD steps."""
    if not target_epsilon > 0:
        raise ValueError(f"target_epsilon must be > 0, got {target_epsilon}")
    if total_steps <= 0:
        raise ValueError(f"total_steps must be > 0, got {total_steps}")
    if not 0 < sample_rate <= 1:
        raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
    return _cached_noise_multiplier(
        float(target_epsilon), float(delta), float(sample_rate), int(total_steps), accountant
    )


@functools.lru_cache(maxsize=64)
def _cached_noise_multiplier(
    target_epsilon: float, delta: float, sample_rate: float, total_steps: int, accountant: str
) -> float:
    from opacus.accountants.utils import get_noise_multiplier

    return float(
        get_noise_multiplier(
            target_epsilon=target_epsilon,
            target_delta=delta,
            sample_rate=sample_rate,
            steps=total_steps,
            accountant=accountant,
            **epsilon_kwargs(accountant),
        )
    )


NOISE_SEARCH_RELATIVE_TOLERANCE = 1e-3
MAX_USEFUL_NOISE_MULTIPLIER = 10.0
"""Above this the noise swamps any clipped gradient sum of a realistic batch: a budget that needs more noise than
this for the rounds left is treated as spent (the round is declined rather than trained into pure noise)."""


def noise_multiplier_for_remaining_budget(
    state: dict[str, Any] | None,
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    remaining_steps: int,
    accountant: str = "rdp",
    *,
    relative_tolerance: float = NOISE_SEARCH_RELATIVE_TOLERANCE,
    max_noise_multiplier: float = MAX_USEFUL_NOISE_MULTIPLIER,
) -> float | None:
    """Smallest noise multiplier (within `relative_tolerance`) with which `remaining_steps` more steps keep the
    history within `target_epsilon`; None when no noise up to `max_noise_multiplier` fits.

    With an empty history this is (up to the tolerance) `noise_multiplier_for_budget`; with rounds already spent
    (earlier runs of the same site on the same data, or rounds declined in this run) the rest of the budget is
    spread over what remains.
    """
    if remaining_steps <= 0:
        raise ValueError(f"remaining_steps must be > 0, got {remaining_steps}")
    if epsilon_of_history(state, delta, accountant) >= target_epsilon:
        return None
    fits = _fits_budget(state, target_epsilon, delta, accountant, sample_rate, remaining_steps)
    # Bracket from 1.0 and bisect: each probe is one accounting pass, which dominates a site's round set-up (Opacus'
    # fractional orders are a Python series), so no separate search for a starting point.
    high = 1.0
    while not fits(high):
        high *= 2.0
        if high > 2.0 * max_noise_multiplier:
            return None
    low = high / 2.0
    while fits(low) and low > 1e-3:
        high, low = low, low / 2.0
    while (high - low) > relative_tolerance * high:
        middle = (low + high) / 2.0
        high, low = (middle, low) if fits(middle) else (high, middle)
    return high if high <= max_noise_multiplier else None


def _fits_budget(
    state: dict[str, Any] | None, target_epsilon: float, delta: float, accountant: str, sample_rate: float, steps: int
) -> Callable[[float], bool]:
    """sigma -> whether `steps` more steps at sigma keep the history within the target.

    For RDP the history's Renyi divergences are summed once (RDP composes additively, exactly as Opacus'
    RDPAccountant computes it), so each probe costs one `compute_rdp`; other accountants replay the history."""
    if accountant != "rdp":
        return lambda sigma: projected_epsilon(state, delta, accountant, sigma, sample_rate, steps) <= target_epsilon
    history_rdp = _history_rdp((state or {}).get("history", []))

    def fits(sigma: float) -> bool:
        total = history_rdp + steps * _one_step_rdp(float(sample_rate), float(sigma))
        return _rdp_epsilon(total, delta) <= target_epsilon

    return fits


@functools.lru_cache(maxsize=4096)
def _one_step_rdp(sample_rate: float, noise_multiplier: float) -> np.ndarray:
    """Renyi divergences at RDP_ALPHAS of one subsampled Gaussian step (Opacus' `compute_rdp` with steps=1).

    RDP composes additively and `compute_rdp` is exactly steps x this, so a history is a weighted sum of cached
    rows: the fractional orders are a slow Python series, and a round's set-up asks for the same (rate, sigma)
    pairs many times (budget check, noise search, ledger)."""
    from opacus.accountants.analysis import rdp as rdp_analysis

    row = rdp_analysis.compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=list(RDP_ALPHAS))
    row.setflags(write=False)
    return row


def _history_rdp(history: list) -> np.ndarray:
    """Summed Renyi divergences of an accountant history [[sigma, rate, steps], ...]."""
    total = np.zeros(len(RDP_ALPHAS))
    for sigma, rate, count in history:
        total = total + int(count) * _one_step_rdp(float(rate), float(sigma))
    return total


def accountant_state_to_json(state: dict[str, Any] | None) -> dict[str, Any] | None:
    """JSON form of an accountant `state_dict()` (tuples become lists)."""
    if state is None:
        return None
    return {
        "mechanism": str(state["mechanism"]),
        "history": [[float(sigma), float(rate), int(steps)] for sigma, rate, steps in state["history"]],
    }


def _check_mechanism(state: dict[str, Any], accountant: str) -> None:
    if state.get("mechanism", accountant) != accountant:
        raise ValueError(f"accountant state is for '{state.get('mechanism')}', not '{accountant}'")


def _rdp_epsilon(total_rdp: np.ndarray, delta: float) -> float:
    """Epsilon at `delta` of summed Renyi divergences at RDP_ALPHAS (Opacus' conversion)."""
    from opacus.accountants.analysis import rdp as rdp_analysis

    epsilon, _ = rdp_analysis.get_privacy_spent(orders=list(RDP_ALPHAS), rdp=total_rdp, delta=delta)
    return float(epsilon)


def accountant_from_state(accountant: str, state: dict[str, Any] | None) -> Any:
    """An Opacus accountant of kind `accountant` that has replayed `state`'s history."""
    from opacus.accountants import create_accountant

    instance = create_accountant(mechanism=accountant)
    if state is not None and state.get("history"):
        _check_mechanism(state, accountant)
        instance.load_state_dict({"mechanism": accountant, "history": [tuple(entry) for entry in state["history"]]})
    return instance


def epsilon_of_history(state: dict[str, Any] | None, delta: float, accountant: str = "rdp") -> float:
    """Epsilon spent by the recorded history (0.0 for none)."""
    if state is None or not state.get("history"):
        return 0.0
    if accountant == "rdp":  # what Opacus' RDPAccountant.get_epsilon computes, from the cached per-step rows
        _check_mechanism(state, accountant)
        return _rdp_epsilon(_history_rdp(state["history"]), delta)
    return float(accountant_from_state(accountant, state).get_epsilon(delta, **epsilon_kwargs(accountant)))


def projected_epsilon(
    state: dict[str, Any] | None,
    delta: float,
    accountant: str,
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
) -> float:
    """Epsilon the history would reach after `steps` more DP-SGD steps at (noise_multiplier, sample_rate)."""
    history = list((state or {}).get("history", [])) + [[noise_multiplier, sample_rate, int(steps)]]
    return epsilon_of_history({"mechanism": accountant, "history": history}, delta, accountant)
