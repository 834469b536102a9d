"""The server's instructions carry the global model as one packed vector; the global model stays per-parameter."""

from __future__ import annotations

import numpy as np
from flwr.common import parameters_to_ndarrays
from flwr.server.client_manager import SimpleClientManager

from bcvlm_client.array_packing import pack_model
from bcvlm_server.federated_strategy import FederatedStrategy
from bcvlm_server.run_records import RunRecords
from bcvlm_server.server_config import ServerConfig
from bcvlm_server.strategies import build_inner_strategy
from bcvlm_testing.client_proxy import NodeProxy

GLOBAL = [np.arange(12, dtype=np.float32).reshape(4, 3), np.full(5, -1.5, dtype=np.float32), np.ones((2, 2, 2))]
FEDERATED_VALUES = 12 + 5 + 8


def _wrapper(tmp_path) -> tuple[FederatedStrategy, SimpleClientManager]:
    cfg = ServerConfig(run_dir=str(tmp_path))
    cfg.secagg.enabled = False
    cfg.min_sites = 2
    cfg.round_timeout_s = 5.0
    manager = SimpleClientManager()
    for node in (1, 2):
        manager.register(NodeProxy(node))
    wrapper = FederatedStrategy(
        cfg, build_inner_strategy(cfg, GLOBAL), GLOBAL, records=RunRecords(tmp_path), save_checkpoint=lambda *a: None
    )
    return wrapper, manager


def assert_packed(instructions: list) -> None:
    """Every site's instruction holds exactly the packed global model."""
    assert len(instructions) == 2
    for _, ins in instructions:
        arrays = parameters_to_ndarrays(ins.parameters)
        assert [array.shape for array in arrays] == [(FEDERATED_VALUES,)]
        np.testing.assert_array_equal(arrays[0], pack_model(GLOBAL)[0])


def test_fit_instructions_carry_one_array_of_every_federated_value(tmp_path) -> None:
    wrapper, manager = _wrapper(tmp_path)
    assert_packed(wrapper.configure_fit(1, wrapper.initialize_parameters(manager), manager))


def test_evaluate_instructions_carry_one_array_of_every_federated_value(tmp_path) -> None:
    wrapper, manager = _wrapper(tmp_path)
    assert_packed(wrapper.configure_evaluate(1, wrapper.initialize_parameters(manager), manager))
