"""Strategy state saved with a round (FedAdam moments, safetensors + JSON) restores bit for bit."""

from __future__ import annotations

import numpy as np
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters

from bcvlm_server.run_records import RunRecords
from bcvlm_server.server_config import ServerConfig
from bcvlm_server.strategies import build_inner_strategy, load_strategy_state, strategy_state_arrays
from bcvlm_testing.client_proxy import NodeProxy

WEIGHTS = [np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3), np.zeros(5, dtype=np.float32)]


def test_fedadam_moments_survive_a_save_and_load(tmp_path) -> None:
    cfg = ServerConfig(run_dir=str(tmp_path))
    cfg.strategy.name = "fedadam"
    strategy = build_inner_strategy(cfg, WEIGHTS)
    moved = [w + 0.05 for w in WEIGHTS]
    results = [(NodeProxy(k), FitRes(Status(Code.OK, "Success"), ndarrays_to_parameters(moved), 5, {})) for k in (1, 2)]
    strategy.aggregate_fit(1, results, [])
    state = strategy_state_arrays(strategy)
    assert {"m_t.00000", "v_t.00000", "current_weights.00001"} <= set(state)
    records = RunRecords(tmp_path)
    records.save_strategy_state(1, "fedadam", state)
    meta, loaded = records.load_strategy_state(1)
    assert meta == {"strategy": "fedadam", "round": 1, "arrays": sorted(state)}
    fresh = build_inner_strategy(cfg, WEIGHTS)
    load_strategy_state(fresh, loaded)
    for key in ("m_t", "v_t", "current_weights"):
        for restored, original in zip(getattr(fresh, key), getattr(strategy, key)):
            assert np.array_equal(restored, original)
    assert any(np.abs(m).sum() > 0 for m in fresh.m_t)


def test_stateless_strategies_save_an_empty_state(tmp_path) -> None:
    cfg = ServerConfig(run_dir=str(tmp_path))
    strategy = build_inner_strategy(cfg, WEIGHTS)
    records = RunRecords(tmp_path)
    records.save_strategy_state(3, "fedavg", strategy_state_arrays(strategy))
    assert records.load_strategy_state(3)[1] == {}
    assert records.last_completed_round() == 0
    records.mark_round_completed(3, 5)
    assert records.last_completed_round() == 3
