"""Federated evaluation summed under SecAgg+: the server learns the pooled score histograms, never a site's own.

Flower 1.42's SecAgg+ protocol sums "training" replies only, so evaluation runs as a second SecAgg+ pass after each
round's training: the instruction is a TRAIN message flagged `secure-evaluation` that carries the global model and
the evaluation settings; each site answers with its released histograms (evaluation and validation splits) as arrays (`reply_schema.histograms_to_arrays`,
counts divided by a common scale, all sites with the same weight), and the protocol's unmasked aggregate is their
mean, times the number of summed sites = the pooled histogram. Why a second pass rather than appending the counts to
the training vector: the histograms describe the model the sites evaluate (this round's aggregate, which exists only
after the training pass), the pass works for the final model too, and the training update keeps its own weighting.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from flwr.common import FitIns, FitRes, Parameters, parameters_to_ndarrays
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.compat.legacy_context import LegacyContext
from flwr.serverapp.grid import Grid

from bcvlm_client.reply_schema import (
    COUNT_SCALE_KEY,
    EVALUATION_WEIGHT_KEY,
    SECURE_EVALUATION_KEY,
    arrays_to_histograms,
)
from bcvlm_server.federated_strategy import FederatedStrategy
from bcvlm_server.reply_tracker import ReplyTracker
from bcvlm_server.secagg_masks import FullStrengthSecAggPlusWorkflow
from bcvlm_server.workflows import round_in_progress

LOGGER = logging.getLogger("bcvlm_server.secure_evaluation")

CELL_CAPACITY = 16384
"""Most cases one histogram cell may hold: counts are sent as count x clipping_range / CELL_CAPACITY, which keeps
each count 2 x quantisation_range / CELL_CAPACITY quantisation steps wide (128 with the defaults), so the rounded
secure sum is exact."""


class EvaluationAsSecureSum:
    """Strategy view for one SecAgg+ pass: its `configure_fit` hands out the evaluate instructions (flagged), its
    `aggregate_fit` turns the secure sum back into pooled histograms for the real strategy."""

    def __init__(self, strategy: FederatedStrategy, count_scale: float, weight: int) -> None:
        self.strategy = strategy
        self.count_scale = float(count_scale)
        self.weight = int(weight)
        self.finished = False

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        instructions = self.strategy.configure_evaluate(server_round, parameters, client_manager)
        if not instructions:
            self.finished = True  # the strategy closed the round itself (no site to ask)
        flags = {SECURE_EVALUATION_KEY: True, COUNT_SCALE_KEY: self.count_scale, EVALUATION_WEIGHT_KEY: self.weight}
        return [(proxy, FitIns(ins.parameters, {**ins.config, **flags})) for proxy, ins in instructions]

    def aggregate_fit(
        self, server_round: int, results: list[tuple[ClientProxy, FitRes]], failures: list[Any]
    ) -> tuple[None, dict[str, Any]]:
        site_metrics = {str(proxy.node_id): dict(res.metrics) for proxy, res in results}
        pooled: dict = {}
        validation: dict = {}
        if results:
            mean = parameters_to_ndarrays(results[0][1].parameters)  # the protocol's weighted mean, equal weights
            pooled, validation = arrays_to_histograms([array * len(results) for array in mean], self.count_scale)
        LOGGER.info(
            "round %s: evaluation summed securely over %d site(s), %d failure(s)",
            self.strategy.absolute_round(server_round),  # Flower counts the rounds of a resumed run from 1
            len(results),
            len(failures),
        )
        self.strategy.aggregate_secure_evaluation(server_round, pooled, site_metrics, len(failures), validation)
        self.finished = True
        return None, {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.strategy, name)


class SecureEvaluateWorkflow:
    """DefaultWorkflow's evaluate stage with SecAgg+: one more SecAgg+ pass whose "fit" is the sites' evaluation."""

    def __init__(self, secagg: FullStrengthSecAggPlusWorkflow, clipping_range: float) -> None:
        self.secagg = secagg
        self.count_scale = CELL_CAPACITY / float(clipping_range)

    def __call__(self, grid: Grid, context: LegacyContext) -> None:
        strategy = context.strategy
        if not isinstance(strategy, FederatedStrategy):
            raise TypeError(f"secure evaluation needs bcvlm's FederatedStrategy, got {type(strategy).__name__}")
        view = EvaluationAsSecureSum(strategy, self.count_scale, weight=int(self.secagg.max_weight))
        context.strategy = view  # type: ignore[assignment]
        recording = grid.recording_as("evaluate") if isinstance(grid, ReplyTracker) else contextlib.nullcontext()
        try:
            with recording:
                self.secagg(grid, context)
        finally:
            context.strategy = strategy
        if not view.finished:  # the pass halted (too few sites for the protocol): the round still gets its record
            round_number = round_in_progress(context)
            LOGGER.warning(
                "round %d: secure evaluation halted; the pooled metrics are withheld",
                strategy.absolute_round(round_number),
            )
            strategy.aggregate_secure_evaluation(round_number, {}, {}, failures=1)
