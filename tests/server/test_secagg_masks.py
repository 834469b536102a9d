"""A real SecAgg+ round (Flower's protocol, bcvlm's ChaCha20 masks) on fixed site updates: the unmasked aggregate is
the plain weighted mean within the quantisation error, also when a site is lost after the key exchange, a site
that does not confirm the mask expansion is left out instead of spoiling the sum, and a site uploads at most 4 bytes
per parameter."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest
from flwr.app import Context, Message, RecordDict
from flwr.client import NumPyClient
from flwr.clientapp import ClientApp
from flwr.common import bytes_to_ndarray, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.compat.common import recorddict_compat as compat
from flwr.server import ServerConfig
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow
from flwr.server.workflow.constant import MAIN_PARAMS_RECORD

from bcvlm_client.secagg_mod import full_strength_secaggplus_mod
from bcvlm_model.privacy.mask_expansion import MASK_PRG_CONFIG_KEY
from bcvlm_server.secagg_masks import FullStrengthSecAggPlusWorkflow
from bcvlm_testing.inprocess_grid import InProcessGrid

CLIPPING_RANGE = 1.0
QUANTIZATION_RANGE = 2**22
MAX_WEIGHT = 100.0
SHAPES = [(40, 5), (7,)]
WEIGHTS = {101: 10, 102: 25, 103: 40, 104: 15}
RNG = np.random.default_rng(0)
UPDATES = {node: [RNG.uniform(-0.9, 0.9, shape) for shape in SHAPES] for node in WEIGHTS}


class FixedUpdateClient(NumPyClient):
    """Replies to fit with a known update and weight, so the server's unmasked sum can be checked exactly."""

    def __init__(self, node_id: int) -> None:
        self.node_id = node_id

    def fit(self, parameters: list[np.ndarray], config: dict) -> tuple[list[np.ndarray], int, dict]:
        return UPDATES[self.node_id], WEIGHTS[self.node_id], {}


def _setup_reply_without_confirmation(node: int) -> Callable:
    """Outermost mod at `node`: removes the mask-expansion confirmation (what a site without it would send)."""

    def mod(msg: Message, context: Context, call_next: Callable) -> Message:
        reply = call_next(msg, context)
        configs = reply.content.config_records.get(RECORD_KEY_CONFIGS) if reply.has_content() else None
        if context.node_id == node and configs is not None and MASK_PRG_CONFIG_KEY in configs:
            del configs[MASK_PRG_CONFIG_KEY]
        return reply

    return mod


def _secagg_round(silent: Callable[[Message], bool] | None = None, extra_mods: tuple = ()) -> list[np.ndarray]:
    """One SecAgg+ fit round over the four sites; returns the new global parameters."""
    app = ClientApp(
        client_fn=lambda context: FixedUpdateClient(context.node_id).to_client(),
        mods=[*extra_mods, full_strength_secaggplus_mod],
    )
    grid = InProcessGrid(app, {node: {} for node in WEIGHTS}, silent_nodes=silent)
    strategy = FedAvg(
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=len(WEIGHTS),
        min_available_clients=len(WEIGHTS),
        initial_parameters=ndarrays_to_parameters([np.zeros(shape) for shape in SHAPES]),
    )
    context = LegacyContext(
        context=Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={}),
        config=ServerConfig(num_rounds=1),
        strategy=strategy,
    )
    workflow = FullStrengthSecAggPlusWorkflow(
        num_shares=1.0,
        reconstruction_threshold=0.5,
        clipping_range=CLIPPING_RANGE,
        quantization_range=QUANTIZATION_RANGE,
        max_weight=MAX_WEIGHT,
        timeout=30.0,
    )
    DefaultWorkflow(fit_workflow=workflow)(grid, context)
    return parameters_to_ndarrays(
        compat.arrayrecord_to_parameters(context.state.array_records[MAIN_PARAMS_RECORD], keep_input=True)
    )


def _expected(nodes: list[int]) -> tuple[list[np.ndarray], float]:
    """Weighted mean of the sites' updates, and the quantisation error bound for it."""
    total = sum(WEIGHTS[n] for n in nodes)
    mean = [sum(WEIGHTS[n] * UPDATES[n][i] for n in nodes) / total for i in range(len(SHAPES))]
    # Each site's weighted update is stochastically rounded to steps of 2C/Q (error < 1 step per element); the
    # sum is divided by the total weight ratio; weights are themselves rounded to 1/Q of MAX_WEIGHT.
    step = 2 * CLIPPING_RANGE / QUANTIZATION_RANGE
    bound = len(nodes) * step / (total / MAX_WEIGHT) + len(nodes) * CLIPPING_RANGE * MAX_WEIGHT / (
        QUANTIZATION_RANGE * total / len(nodes)
    )
    return mean, bound


def _assert_close(got: list[np.ndarray], nodes: list[int]) -> None:
    mean, bound = _expected(nodes)
    errors = [float(np.abs(g - m).max()) for g, m in zip(got, mean)]
    assert max(errors) <= bound, (errors, bound)


def test_aggregate_is_the_plain_weighted_mean_within_quantisation_error() -> None:
    _assert_close(_secagg_round(), list(WEIGHTS))


def test_a_site_lost_after_the_key_exchange_is_unmasked_correctly() -> None:
    """Node 103 has pairwise masks with everyone but never uploads: the server rebuilds them from its key shares."""

    def lost_before_upload(message: Message) -> bool:
        configs = message.content.config_records.get(RECORD_KEY_CONFIGS) if message.has_content() else None
        return (
            message.metadata.dst_node_id == 103
            and configs is not None
            and configs.get(Key.STAGE) == Stage.COLLECT_MASKED_VECTORS
        )

    _assert_close(_secagg_round(silent=lost_before_upload), [101, 102, 104])


def test_a_site_that_does_not_confirm_the_mask_expansion_is_left_out() -> None:
    _assert_close(_secagg_round(extra_mods=(_setup_reply_without_confirmation(102),)), [101, 103, 104])


def test_the_aggregate_check_can_fail() -> None:
    """Guard for the tests above: a different update at one site moves the aggregate beyond the bound."""
    with pytest.raises(AssertionError):
        _assert_close(_secagg_round(), [101, 102, 103])


NPY_HEADER_BYTES = 128
"""Each masked array travels as a .npy file: a 128-byte header (magic, dtype, shape) before the values."""


def test_a_site_uploads_at_most_four_bytes_per_parameter() -> None:
    uploads: list[list[bytes]] = []

    def record_masked_upload(msg: Message, context: Context, call_next: Callable) -> Message:
        reply = call_next(msg, context)
        configs = reply.content.config_records.get(RECORD_KEY_CONFIGS) if reply.has_content() else None
        if configs is not None and Key.MASKED_PARAMETERS in configs:
            uploads.append(list(configs[Key.MASKED_PARAMETERS]))
        return reply

    _assert_close(_secagg_round(extra_mods=(record_masked_upload,)), list(WEIGHTS))
    assert len(uploads) == len(WEIGHTS)
    for upload in uploads:
        values = sum(bytes_to_ndarray(data).size for data in upload)  # the parameters and the weight factor
        assert sum(len(data) for data in upload) <= 4 * values + NPY_HEADER_BYTES * len(upload)
