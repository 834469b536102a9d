"""Without SecAgg+: non-finite, oversized and wrongly packed updates are rejected, declined sites skipped, the global
stays finite."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays

from bcvlm_client.array_packing import pack_model
from bcvlm_server.federated_strategy import FederatedStrategy
from bcvlm_server.run_records import RunRecords
from bcvlm_server.server_config import ServerConfig
from bcvlm_server.strategies import build_inner_strategy
from bcvlm_testing.client_proxy import NodeProxy

GLOBAL = [np.ones((4, 3), dtype=np.float32), np.zeros(5, dtype=np.float32)]


def _result(node: int, update: list[np.ndarray], declined: int = 0, examples: int = 10, packed: bool = True):
    """A site's fit reply carrying `update` as it travels (one packed vector), or as given when not `packed`."""
    metrics = {"epsilon": 1.0, "declined": declined, "steps": 2}
    arrays = pack_model(update) if packed else update
    return NodeProxy(node), FitRes(Status(Code.OK, "Success"), ndarrays_to_parameters(arrays), examples, metrics)


def _update(value: float) -> list[np.ndarray]:
    return [np.full_like(array, value) for array in GLOBAL]


@pytest.mark.parametrize("strategy", ["fedavg", "fedmedian", "fedtrimmedavg", "krum"])
def test_malicious_updates_are_rejected_and_the_global_model_stays_finite(tmp_path, strategy) -> None:
    cfg = ServerConfig(run_dir=str(tmp_path))
    cfg.secagg.enabled = False
    cfg.strategy.name = strategy
    cfg.strategy.trim_fraction = 0.0
    cfg.update_guard.max_update_norm = 10.0
    wrapper = FederatedStrategy(
        cfg, build_inner_strategy(cfg, GLOBAL), GLOBAL, records=RunRecords(tmp_path), save_checkpoint=lambda *args: None
    )
    nan_update = _update(0.1)
    nan_update[1][2] = np.nan
    results = [
        _result(1, _update(0.1)),
        _result(2, _update(0.1)),
        _result(3, _update(0.1)),
        _result(4, nan_update),
        _result(5, _update(1e6)),
        _result(6, _update(-50.0), declined=1, examples=0),
    ]
    parameters, _ = wrapper.aggregate_fit(1, results, [])
    new_global = parameters_to_ndarrays(parameters)
    assert all(np.isfinite(array).all() for array in new_global)
    for array, before in zip(new_global, GLOBAL):
        np.testing.assert_allclose(array, before + 0.1, rtol=1e-6)
    sites = wrapper._round["fit"]["sites"]
    assert "non-finite" in sites["4"]["rejected"] and "norm" in sites["5"]["rejected"]
    assert sites["6"]["declined"] == 1 and sites["1"]["rejected"] is None
    assert wrapper._round["fit"]["accepted"] == 3


def test_no_acceptable_update_keeps_the_global_model(tmp_path) -> None:
    cfg = ServerConfig(run_dir=str(tmp_path))
    cfg.secagg.enabled = False
    wrapper = FederatedStrategy(
        cfg, build_inner_strategy(cfg, GLOBAL), GLOBAL, records=RunRecords(tmp_path), save_checkpoint=lambda *args: None
    )
    parameters, _ = wrapper.aggregate_fit(1, [_result(1, _update(np.inf))], [])
    for array, before in zip(parameters_to_ndarrays(parameters), GLOBAL):
        np.testing.assert_array_equal(array, before)


def _plain_wrapper(tmp_path) -> FederatedStrategy:
    cfg = ServerConfig(run_dir=str(tmp_path))
    cfg.secagg.enabled = False
    cfg.update_guard.max_update_norm = 10.0
    return FederatedStrategy(
        cfg, build_inner_strategy(cfg, GLOBAL), GLOBAL, records=RunRecords(tmp_path), save_checkpoint=lambda *args: None
    )


@pytest.mark.parametrize("delta", [-1, 1])
def test_a_packed_update_of_the_wrong_length_is_rejected_naming_both_lengths(tmp_path, delta: int) -> None:
    wrapper = _plain_wrapper(tmp_path)
    length = sum(array.size for array in GLOBAL)
    results = [_result(1, _update(0.1)), _result(2, [np.full(length + delta, 0.1, dtype=np.float32)])]
    parameters, _ = wrapper.aggregate_fit(1, results, [])
    sites = wrapper._round["fit"]["sites"]
    assert f"{length + delta} values" in sites["2"]["rejected"] and f"has {length} " in sites["2"]["rejected"]
    assert sites["1"]["rejected"] is None and wrapper._round["fit"]["accepted"] == 1


def test_an_unpacked_update_is_rejected(tmp_path) -> None:
    wrapper = _plain_wrapper(tmp_path)
    wrapper.aggregate_fit(1, [_result(1, _update(0.1), packed=False)], [])
    assert "one packed array" in wrapper._round["fit"]["sites"]["1"]["rejected"]
    assert wrapper._round["fit"]["accepted"] == 0
