"""FederatedStrategy: wraps a Flower strategy with the bcvlm round protocol and run-directory bookkeeping.

- Models travel packed: every instruction carries the global model, every fit reply its update, as one float32
  vector (`bcvlm_client.array_packing`); the inner strategy, checkpoints and `global_arrays` stay per-parameter.
- Sites send UPDATES (local - global); this wrapper turns them into full weights for the inner strategy, drops
  declined sites, and (without SecAgg+) rejects non-finite or oversized updates. The global model only changes
  to a finite result.
- Rounds are numbered continuously across resumes (`round_offset`).
- At the end of every round: checkpoint, strategy state, metrics JSON, then `state.json` (see `RunRecords`).
- A round in which fewer than `min_sites` sites trained leaves the global model unchanged and is recorded as failed,
  with every site's outcome (trained / declined with its reason code / failed with an error class / dropped).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Callable

import numpy as np
from flwr.common import (
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    Parameters,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import Strategy

from bcvlm_client.array_packing import PackedModelError, pack_model, unpack_model
from bcvlm_client.round_record import (
    ByteCount,
    FitSiteEntry,
    FitStage,
    OperatingPointsRecord,
    RoundRecord,
    SiteOutcome,
    record_from_json,
)
from bcvlm_client.run_settings import encode_round_settings
from bcvlm_model.inference.operating_point import OPERATING_POINTS_KEY
from bcvlm_model.metrics import ScoreHistogram
from bcvlm_server.bounded_client_manager import BoundedClientManager
from bcvlm_server.operating_points import choose_operating_points, log_operating_points
from bcvlm_server.reply_tracker import ReplyTracker
from bcvlm_server.round_metrics import evaluation_stage, sum_site_histograms
from bcvlm_server.round_outcomes import (
    TRAINED,
    describe_outcome,
    fit_reply_outcome,
    missing_reply_outcome,
    round_failure,
)
from bcvlm_server.run_records import RunRecords
from bcvlm_server.server_config import ServerConfig
from bcvlm_server.strategies import strategy_state_arrays
from bcvlm_server.update_guard import rejection_reason, update_norm

LOGGER = logging.getLogger("bcvlm_server.strategy")

CheckpointFn = Callable[[int, list[np.ndarray], dict[str, Any]], None]
"""(absolute round, global arrays, checkpoint `extra` additions: the operating points when there are any)."""
ByteCounter = Callable[[], dict[int, dict[str, int]]]


def _as_float32(arrays: list[np.ndarray]) -> list[np.ndarray]:
    return [np.ascontiguousarray(np.asarray(array, dtype=np.float32)) for array in arrays]


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class FederatedStrategy(Strategy):
    """The ServerApp's strategy: round protocol, update checks and per-round records around an inner strategy."""

    def __init__(
        self,
        cfg: ServerConfig,
        inner: Strategy,
        global_arrays: list[np.ndarray],
        *,
        records: RunRecords,
        save_checkpoint: CheckpointFn,
        round_offset: int = 0,
        byte_counter: ByteCounter | None = None,
        reply_tracker: ReplyTracker | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.inner = inner
        self.global_arrays = _as_float32(global_arrays)
        self.records = records
        self.save_checkpoint = save_checkpoint
        self.round_offset = int(round_offset)
        self.byte_counter = byte_counter
        self.reply_tracker = reply_tracker
        self._round: dict[str, Any] = {}
        self.sent_global: dict[int, list[np.ndarray]] = {}
        """Global arrays sent at the start of each (absolute) round: for tests and audits."""

    def __repr__(self) -> str:
        return f"FederatedStrategy({self.cfg.strategy.name}, secagg={self.cfg.secagg.enabled})"

    # --- helpers ------------------------------------------------------------------------------------------------
    def absolute_round(self, server_round: int) -> int:
        return self.round_offset + int(server_round)

    def _settings(self, absolute: int) -> dict[str, Any]:
        cfg = self.cfg
        return encode_round_settings(
            server_round=absolute,
            planned_rounds=cfg.rounds,
            proximal_mu=cfg.strategy.proximal_mu if cfg.strategy.name == "fedprox" else 0.0,
            n_bins=cfg.evaluation.n_bins,
            model=cfg.model,
            preprocess=cfg.preprocess,
            text=cfg.text,
            local_train=cfg.local_train,
            dp_trainable=cfg.dp_trainable if cfg.dp_model else None,
            dp=cfg.dp_model,
            dp_target_epsilon=cfg.dp_target_epsilon,
        )

    def _packed_global(self) -> Parameters:
        """The global model as instructions carry it: one packed vector."""
        return ndarrays_to_parameters(pack_model(self.global_arrays))

    def _start_round(self, absolute: int) -> None:
        if self._round.get("round") != absolute:
            self._round = {"round": absolute, "started": time.perf_counter(), "fit": None, "evaluate": None}

    # --- Strategy interface -------------------------------------------------------------------------------------
    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        return ndarrays_to_parameters(self.global_arrays)

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        absolute = self.absolute_round(server_round)
        self._start_round(absolute)
        self.sent_global[absolute] = [array.copy() for array in self.global_arrays]
        quorum = BoundedClientManager(
            client_manager, self.cfg.round_timeout_s, require_quorum=True, stage=f"round {absolute} training"
        )
        instructions = self.inner.configure_fit(absolute, self._packed_global(), quorum)
        if quorum.shortfall:
            self._round["quorum_missing"] = True
            self._round["fit"] = {
                "sites": {},
                "failures": 0,
                "accepted": 0,
                "outcome": f"unchanged: {quorum.shortfall}",
                "finished": time.perf_counter(),
            }
        settings = self._settings(absolute)
        LOGGER.info("round %d: training on %d sites", absolute, len(instructions))
        return [(proxy, FitIns(fitins.parameters, {**fitins.config, **settings})) for proxy, fitins in instructions]

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Any]]:
        absolute = self.absolute_round(server_round)
        self._start_round(absolute)
        secagg = self.cfg.secagg.enabled
        sites: dict[str, dict[str, Any]] = {}
        accepted: list[tuple[ClientProxy, FitRes]] = []
        for proxy, fitres in results:
            metrics = dict(fitres.metrics)
            entry = {
                "num_examples": int(fitres.num_examples),
                "epsilon": _json_number(float(metrics.get("epsilon", float("nan")))),
                "declined": int(metrics.get("declined", 0)),
                "steps": int(metrics.get("steps", 0)),
                "rejected": None,
            }
            sites[str(proxy.node_id)] = entry
            if entry["declined"] or fitres.num_examples <= 0:
                continue
            try:  # a site's reply, or under SecAgg+ the unmasked aggregate, of another length is not this model's
                update = unpack_model(parameters_to_ndarrays(fitres.parameters), [a.shape for a in self.global_arrays])
            except PackedModelError as exc:
                entry["rejected"] = str(exc)
                LOGGER.warning("round %d: update of node %s rejected: %s", absolute, proxy.node_id, exc)
                continue
            if not secagg:
                reason = rejection_reason(update, self.global_arrays, self.cfg.update_guard.max_update_norm)
                if reason is not None:
                    entry["rejected"] = reason
                    LOGGER.warning("round %d: update of node %s rejected: %s", absolute, proxy.node_id, reason)
                    continue
                entry["update_norm"] = update_norm(update)
            full = [g + np.asarray(u, dtype=np.float32) for g, u in zip(self.global_arrays, update)]
            accepted.append((proxy, FitRes(fitres.status, ndarrays_to_parameters(full), fitres.num_examples, {})))
        outcome = "unchanged: no accepted update"
        if accepted and len(accepted) < self.cfg.min_sites:
            # An aggregate of fewer sites than the quorum is not what the center agreed to publish.
            outcome = f"unchanged: {len(accepted)} site(s) trained, fewer than min_sites {self.cfg.min_sites}"
        elif accepted:
            if secagg and not all(np.isfinite(a).all() for a in parameters_to_ndarrays(accepted[0][1].parameters)):
                outcome = "unchanged: the secure aggregate is non-finite"
            else:
                aggregated, _ = self.inner.aggregate_fit(absolute, accepted, [])
                if aggregated is None:
                    outcome = "unchanged: the strategy returned nothing"
                else:
                    new_arrays = _as_float32(parameters_to_ndarrays(aggregated))
                    if all(np.isfinite(array).all() for array in new_arrays):
                        self.global_arrays = new_arrays
                        outcome = f"updated from {len(accepted)} sites"
                    else:
                        outcome = "unchanged: the aggregate is non-finite"
        LOGGER.info("round %d: global model %s", absolute, outcome)
        self._round["fit"] = {
            "sites": sites,
            "failures": len(failures),
            "accepted": len(accepted),
            "outcome": outcome,
            "finished": time.perf_counter(),
        }
        return ndarrays_to_parameters(self.global_arrays), {}

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        absolute = self.absolute_round(server_round)
        self._start_round(absolute)
        # After a training stage that found no quorum, evaluation does not wait a second timeout for it.
        missed = bool(self._round.get("quorum_missing"))
        available = BoundedClientManager(
            client_manager,
            0.0 if missed else self.cfg.round_timeout_s,
            require_quorum=False,
            stage=f"round {absolute} evaluation",
        )
        instructions = self.inner.configure_evaluate(absolute, self._packed_global(), available)
        if not instructions:
            self._finish_round(absolute, {}, None)
            return []
        settings = self._settings(absolute)
        return [(proxy, EvaluateIns(ins.parameters, {**ins.config, **settings})) for proxy, ins in instructions]

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Any]]:
        absolute = self.absolute_round(server_round)
        site_metrics = {str(proxy.node_id): dict(res.metrics) for proxy, res in results}
        total = sum(res.num_examples for _, res in results)
        loss = sum(res.loss * res.num_examples for _, res in results) / total if total else None
        self._finish_round(absolute, site_metrics, loss, failures=len(failures))
        return loss, {}

    def aggregate_secure_evaluation(
        self,
        server_round: int,
        pooled: dict[str, ScoreHistogram],
        site_metrics: dict[str, dict[str, Any]],
        failures: int,
        validation: dict[str, ScoreHistogram] | None = None,
    ) -> None:
        """Close the round with the pooled histograms (evaluation and validation splits) summed under SecAgg+ (no
        site's own histogram is known)."""
        self._finish_round(
            self.absolute_round(server_round),
            site_metrics,
            None,
            failures=failures,
            pooled_histograms=pooled,
            validation_histograms=validation or None,
        )

    def evaluate(self, server_round: int, parameters: Parameters) -> tuple[float, dict[str, Any]] | None:
        return None  # no central data at the coordinating center

    # --- round end ----------------------------------------------------------------------------------------------
    def _finish_round(
        self,
        absolute: int,
        site_metrics: dict[str, dict[str, Any]],
        loss: float | None,
        failures: int = 0,
        pooled_histograms: dict[str, ScoreHistogram] | None = None,
        validation_histograms: dict[str, ScoreHistogram] | None = None,
    ) -> None:
        self._start_round(absolute)
        if validation_histograms is None and pooled_histograms is None and site_metrics:
            validation_histograms = sum_site_histograms(site_metrics, self.cfg.evaluation.n_bins, prefix="val_hist_")
        # The model evaluated this round is the one checkpointed below, so its thresholds travel with it.
        operating_points, operating_record = choose_operating_points(
            validation_histograms,
            target_specificity=self.cfg.evaluation.specificity,
            min_cases=self.cfg.evaluation.min_cases,
        )
        evaluation = evaluation_stage(
            site_metrics,
            loss=loss,
            failures=failures,
            n_bins=self.cfg.evaluation.n_bins,
            min_cases=self.cfg.evaluation.min_cases,
            specificity=self.cfg.evaluation.specificity,
            pooled_histograms=pooled_histograms,
        )
        fit = self._round.get("fit") or {"sites": {}, "failures": 0, "accepted": 0, "outcome": "no fit stage"}
        fit = {key: value for key, value in fit.items() if key != "finished"}
        counts = self.byte_counter() if self.byte_counter is not None else {}
        outcomes, trained = self._site_outcomes(absolute, fit, site_metrics)
        names = self.records.site_names()
        failure = round_failure(trained, self.cfg.min_sites, str(fit["outcome"]), outcomes, names)
        record = RoundRecord(
            round=absolute,
            strategy=self.cfg.strategy.name,
            secagg=bool(self.cfg.secagg.enabled),
            wall_seconds=time.perf_counter() - self._round["started"],
            status="failed" if failure else "trained",
            failure=failure,
            site_outcomes={node: SiteOutcome(**outcome) for node, outcome in outcomes.items()},
            fit=FitStage(
                sites={site: FitSiteEntry(**entry) for site, entry in fit["sites"].items()},
                failures=int(fit["failures"]),
                accepted=int(fit["accepted"]),
                outcome=str(fit["outcome"]),
            ),
            epsilon={site: entry["epsilon"] for site, entry in fit["sites"].items()},
            evaluate=evaluation,
            bytes={
                str(node): ByteCount(up=int(value["up"]), down=int(value["down"])) for node, value in counts.items()
            },
            operating_points=record_from_json(OperatingPointsRecord, operating_record, "operating_points"),
        )
        self.save_checkpoint(
            absolute, self.global_arrays, {OPERATING_POINTS_KEY: operating_points} if operating_points else {}
        )
        self.records.save_strategy_state(absolute, self.cfg.strategy.name, strategy_state_arrays(self.inner))
        self.records.save_metrics(absolute, record)
        self.records.mark_round_completed(absolute, self.cfg.rounds)
        pooled = {task: value.auc for task, value in evaluation.pooled.items()}
        for node, outcome in sorted(outcomes.items()):
            LOGGER.info(
                "round %d: site %s: %s; evaluation %s",
                absolute,
                names.get(node, f"node {node}"),
                describe_outcome(outcome),
                outcome.get("evaluate", "not asked"),
            )
        log_operating_points(absolute, operating_record)
        if failure:
            LOGGER.error("round %d FAILED: %s", absolute, failure)
        LOGGER.info("round %d done in %.1f s; pooled AUC %s", absolute, record.wall_seconds, pooled)

    def _site_outcomes(
        self, absolute: int, fit: dict[str, Any], site_metrics: dict[str, dict[str, Any]]
    ) -> tuple[dict[str, dict[str, Any]], int]:
        """({node id: outcome}, number of sites whose update was aggregated) for the round's sites."""
        replies = self.reply_tracker.take_round(str(absolute - self.round_offset)) if self.reply_tracker else {}
        train = {str(node): record for node, record in replies.get("train", {}).items()}
        evaluate = {str(node): record for node, record in replies.get("evaluate", {}).items()}
        outcomes: dict[str, dict[str, Any]] = {}
        for node in sorted(set(train) | set(fit["sites"])):
            if node in fit["sites"]:
                outcomes[node] = fit_reply_outcome(fit["sites"][node])
            else:
                outcomes[node] = missing_reply_outcome(train.get(node), str(fit["outcome"]))
        for node in sorted(set(evaluate) | set(site_metrics)):
            record = evaluate.get(node)
            if node in site_metrics:
                status = "ok"
            elif record is not None and record["state"] != "ok":
                status = describe_outcome(missing_reply_outcome(record, "evaluation"))
            else:
                status = "no result"
            outcomes.setdefault(node, {"outcome": "not asked to train"})["evaluate"] = status
        trained = sum(1 for outcome in outcomes.values() if outcome["outcome"] == TRAINED)
        return outcomes, trained
