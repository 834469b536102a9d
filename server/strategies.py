"""Build the Flower (legacy API) aggregation strategy named in the config; FedAdam state to and from arrays."""

from __future__ import annotations

from typing import Any

import numpy as np
from flwr.common import Parameters, ndarrays_to_parameters
from flwr.server.strategy import FedAdam, FedAvg, FedMedian, FedTrimmedAvg, Krum, Strategy

from bcvlm_server.server_config import ServerConfig


def build_inner_strategy(cfg: ServerConfig, initial_arrays: list[np.ndarray]) -> Strategy:
    """The Flower strategy that combines full weights (global + each site's update)."""
    common: dict[str, Any] = dict(
        fraction_fit=cfg.fraction_fit,
        fraction_evaluate=cfg.fraction_evaluate,
        min_fit_clients=cfg.min_sites,
        min_evaluate_clients=cfg.min_sites,
        min_available_clients=cfg.min_sites,
        accept_failures=True,
    )
    initial: Parameters = ndarrays_to_parameters(initial_arrays)
    name = cfg.strategy.name
    if name in ("fedavg", "fedprox"):
        return FedAvg(**common, initial_parameters=initial)
    if name == "fedadam":
        return FedAdam(
            **common,
            initial_parameters=initial,
            eta=cfg.strategy.server_learning_rate,
            beta_1=cfg.strategy.beta_1,
            beta_2=cfg.strategy.beta_2,
            tau=cfg.strategy.tau,
        )
    if name == "fedmedian":
        return FedMedian(**common, initial_parameters=initial)
    if name == "fedtrimmedavg":
        return FedTrimmedAvg(**common, initial_parameters=initial, beta=cfg.strategy.trim_fraction)
    # Strategy.krum: the last member (StrategyConfig has checked the name against the enum).
    return Krum(**common, initial_parameters=initial, num_malicious_clients=cfg.strategy.krum_num_malicious)


def strategy_state_arrays(strategy: Strategy) -> dict[str, np.ndarray]:
    """Server-side optimizer state to save with a round (FedAdam: current weights and both moments)."""
    state: dict[str, np.ndarray] = {}
    if isinstance(strategy, FedAdam):
        for key in ("current_weights", "m_t", "v_t"):
            for index, array in enumerate(getattr(strategy, key) or []):
                state[f"{key}.{index:05d}"] = np.ascontiguousarray(np.asarray(array))
    return state


def load_strategy_state(strategy: Strategy, state: dict[str, np.ndarray]) -> None:
    """Inverse of `strategy_state_arrays`."""
    if not isinstance(strategy, FedAdam):
        return
    for key in ("current_weights", "m_t", "v_t"):
        names = sorted(name for name in state if name.startswith(f"{key}."))
        if names:
            setattr(strategy, key, [state[name] for name in names])
