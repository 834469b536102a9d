"""Fit and evaluate stages for Flower's legacy DefaultWorkflow with a reply timeout (Flower's own wait forever).

Same logic as `flwr.server.workflow.default_workflows.default_{fit,evaluate}_workflow`, plus
`send_and_receive(..., timeout=...)`: a site that dies mid-round is dropped after `timeout` seconds.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, cast

import flwr.compat.common.recorddict_compat as compat
from flwr.app import Message, RecordDict
from flwr.app.message_type import MessageType
from flwr.common import Code
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key
from flwr.server.workflow.secure_aggregation.secaggplus_workflow import WorkflowState
from flwr.serverapp.grid import Grid

LOGGER = logging.getLogger("bcvlm_server.workflows")


def round_in_progress(context: LegacyContext) -> int:
    """The round DefaultWorkflow is running (from the context's main config record)."""
    return cast(int, context.state.config_records[MAIN_CONFIGS_RECORD][Key.CURRENT_ROUND])


def _send_and_collect(
    grid: Grid,
    instructions: list,
    encode: Callable[[Any], RecordDict],
    decode: Callable[[RecordDict], Any],
    message_type: str,
    current_round: int,
    timeout: float,
) -> tuple[list, list]:
    """Send each site its instruction, wait at most `timeout` s; return (ok results, failures), a missing reply
    counted as a TimeoutError failure."""
    proxies = {proxy.node_id: proxy for proxy, _ in instructions}
    messages = [
        Message(content=encode(ins), dst_node_id=proxy.node_id, message_type=message_type, group_id=str(current_round))
        for proxy, ins in instructions
    ]
    replies = list(grid.send_and_receive(messages, timeout=timeout))
    results: list = []
    failures: list = []
    for reply in replies:
        if reply.has_content():
            result = decode(reply.content)
            target = results if result.status.code == Code.OK else failures
            target.append((proxies[reply.metadata.src_node_id], result))
        else:
            failures.append(Exception(reply.error))
    for _ in range(len(messages) - len(replies)):
        failures.append(TimeoutError(f"no {message_type} reply within {timeout:.0f} s"))
    return results, failures


class _TimedStage:
    """What the timed fit and evaluate stages share: the reply timeout and the round's instructions."""

    def __init__(self, timeout: float) -> None:
        self.timeout = float(timeout)

    @staticmethod
    def _instructions(context: LegacyContext, configure: Callable[..., list]) -> tuple[int, list]:
        """(round, instructions): the strategy's configure_fit or configure_evaluate on the current global model."""
        current_round = round_in_progress(context)
        parameters = compat.arrayrecord_to_parameters(context.state.array_records[MAIN_PARAMS_RECORD], keep_input=True)
        return current_round, configure(
            server_round=current_round, parameters=parameters, client_manager=context.client_manager
        )


class TimedFitWorkflow(_TimedStage):
    """One fit round with a reply timeout (used when SecAgg+ is off)."""

    def __call__(self, grid: Grid, context: LegacyContext) -> None:
        current_round, instructions = self._instructions(context, context.strategy.configure_fit)
        if not instructions:
            LOGGER.info("configure_fit: no sites selected, round %s skipped", current_round)
            return
        results, failures = _send_and_collect(
            grid,
            instructions,
            lambda fitins: compat.fitins_to_recorddict(fitins, True),
            lambda content: compat.recorddict_to_fitres(content, False),
            MessageType.TRAIN,
            current_round,
            self.timeout,
        )
        LOGGER.info("fit round %s: %d results, %d failures", current_round, len(results), len(failures))
        parameters_aggregated, metrics = context.strategy.aggregate_fit(current_round, results, failures)
        if parameters_aggregated:
            context.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(
                parameters_aggregated, True
            )
            context.history.add_metrics_distributed_fit(server_round=current_round, metrics=metrics)


class TimedEvaluateWorkflow(_TimedStage):
    """One federated-evaluation round with a reply timeout."""

    def __call__(self, grid: Grid, context: LegacyContext) -> None:
        current_round, instructions = self._instructions(context, context.strategy.configure_evaluate)
        if not instructions:
            return
        results, failures = _send_and_collect(
            grid,
            instructions,
            lambda evaluateins: compat.evaluateins_to_recorddict(evaluateins, True),
            compat.recorddict_to_evaluateres,
            MessageType.EVALUATE,
            current_round,
            self.timeout,
        )
        loss, metrics = context.strategy.aggregate_evaluate(current_round, results, failures)
        if loss is not None:
            context.history.add_loss_distributed(server_round=current_round, loss=loss)
            context.history.add_metrics_distributed(server_round=current_round, metrics=metrics)


class DropoutTolerantSecAggPlusWorkflow(SecAggPlusWorkflow):
    """Flower's SecAgg+ workflow, fixed for sites lost before or during the key exchange.

    In Flower 1.42 a site that stops answering in the setup or share-keys stage stays in `sampled_node_ids`, so
    the unmask stage asks the survivors for key shares of that site, which they never received: every survivor
    fails with KeyError and the round's update is lost. Such a site has no pairwise mask with anyone (survivors
    mask only with the sites whose encrypted shares they received), so after the share-keys stage only the sites
    still active count as sampled; sites lost later are unmasked as Flower intends.
    """

    def share_keys_stage(self, grid: Grid, context: LegacyContext, state: WorkflowState) -> bool:  # type: ignore[override]
        proceed = super().share_keys_stage(grid, context, state)
        lost = state.sampled_node_ids - state.active_node_ids
        if lost:
            LOGGER.info("SecAgg+: %d site(s) lost before masking; not unmasked later: %s", len(lost), sorted(lost))
        state.sampled_node_ids = set(state.active_node_ids)
        return proceed
