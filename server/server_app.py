"""The coordinating center's Flower ServerApp: legacy workflow (SecAgg+ needs it in Flower 1.42) + FederatedStrategy.

Run-config keys: `server-config` (ServerConfig YAML; else `$BCVLM_SIMULATION_DIR/server.yaml`), `run-dir`
(overrides `run_dir`), `resume` (continue after the run directory's last completed round).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from flwr.app import Context
from flwr.server import LegacyContext
from flwr.server import ServerConfig as FlowerServerConfig
from flwr.server.workflow import DefaultWorkflow
from flwr.serverapp import Grid, ServerApp
from torch import nn

from bcvlm_model.checkpoint import load_checkpoint, save_checkpoint
from bcvlm_model.file_logging import attach_log_file
from bcvlm_model.parameters import federated_parameter_names, get_trainable_state, set_trainable_state
from bcvlm_model.privacy.federated_model import build_federated_model
from bcvlm_server.federated_strategy import FederatedStrategy
from bcvlm_server.metered_grid import MeteredGrid
from bcvlm_server.polling_grid import with_fast_replies
from bcvlm_server.reply_tracker import ReplyTracker
from bcvlm_server.run_records import RunRecords
from bcvlm_server.secagg_masks import FullStrengthSecAggPlusWorkflow
from bcvlm_server.secure_evaluation import SecureEvaluateWorkflow
from bcvlm_server.server_config import ServerConfig, load_server_config
from bcvlm_server.strategies import build_inner_strategy, load_strategy_state
from bcvlm_server.workflows import TimedEvaluateWorkflow, TimedFitWorkflow

LOGGER = logging.getLogger("bcvlm_server")
SIMULATION_DIR_ENV = "BCVLM_SIMULATION_DIR"
ModelFactory = Callable[[ServerConfig], nn.Module]


class RunSetupError(RuntimeError):
    """The run directory and the requested start (fresh / resume) disagree."""


def resolve_server_config(context: Context) -> tuple[ServerConfig, Path, bool]:
    """(config, run dir, resume) from the run config (deployment) or `$BCVLM_SIMULATION_DIR` (simulation)."""
    run_config = context.run_config
    path = str(run_config.get("server-config", "") or "")
    if not path:
        if not os.environ.get(SIMULATION_DIR_ENV):
            raise KeyError(f"run config lacks 'server-config' and {SIMULATION_DIR_ENV} is not set")
        path = str(Path(os.environ[SIMULATION_DIR_ENV]) / "server.yaml")
    cfg = load_server_config(path)
    run_dir = Path(str(run_config.get("run-dir", "") or cfg.run_dir))
    return cfg, run_dir, bool(run_config.get("resume", False))


def default_model_factory(cfg: ServerConfig) -> nn.Module:
    return build_federated_model(cfg.model, cfg.dp_trainable if cfg.dp_model else None)


def trainable_arrays(model: nn.Module) -> list[np.ndarray]:
    state = get_trainable_state(model)
    return [state[name].float().numpy() for name in federated_parameter_names(model)]


class CheckpointWriter:
    """Writes per-round global checkpoints (full model: frozen weights + the federated trainable ones)."""

    def __init__(self, cfg: ServerConfig, records: RunRecords, model: nn.Module) -> None:
        self.cfg = cfg
        self.records = records
        self.model = model
        self.names = federated_parameter_names(model)

    def __call__(self, absolute_round: int, arrays: list[np.ndarray], extra: dict[str, Any] | None = None) -> None:
        set_trainable_state(self.model, {name: torch.from_numpy(a) for name, a in zip(self.names, arrays)})
        save_checkpoint(
            self.records.checkpoint_dir(absolute_round),
            self.model,
            self.cfg.model,
            self.cfg.preprocess,
            self.cfg.text,
            extra={
                "round": int(absolute_round),
                "strategy": self.cfg.strategy.name,
                "federated": True,
                **(extra or {}),  # operating points chosen on the sites' pooled validation histograms
            },
        )


def _attach_log(records: RunRecords) -> None:
    attach_log_file(LOGGER, records.log_path)


def prepare_start(
    cfg: ServerConfig, records: RunRecords, resume: bool, model: nn.Module
) -> tuple[int, list[np.ndarray], dict[str, np.ndarray]]:
    """(completed rounds, global arrays, strategy state) to start or resume from."""
    done = records.last_completed_round()
    if resume and done > 0:
        loaded = load_checkpoint(records.checkpoint_dir(done))
        arrays = trainable_arrays(loaded.model)
        _, strategy_state = records.load_strategy_state(done)
        LOGGER.info("resuming after round %d of %d from %s", done, cfg.rounds, records.checkpoint_dir(done))
        return done, arrays, strategy_state
    if done > 0:
        raise RunSetupError(
            f"run directory {records.root} already completed {done} rounds: resume it (resume=true) or use a new one"
        )
    if cfg.init_checkpoint:
        loaded = load_checkpoint(cfg.init_checkpoint)
        set_trainable_state(model, get_trainable_state(loaded.model))
    return 0, trainable_arrays(model), {}


def run_federation(
    grid: Grid,
    context: Context,
    cfg: ServerConfig,
    run_dir: Path,
    resume: bool,
    model_factory: ModelFactory = default_model_factory,
) -> FederatedStrategy | None:
    """Run (or resume) the configured rounds; returns the strategy (its `global_arrays` = final model)."""
    records = RunRecords(run_dir)
    _attach_log(records)
    torch.manual_seed(cfg.seed)
    model = model_factory(cfg)
    done, arrays, strategy_state = prepare_start(cfg, records, resume, model)
    records.write_effective_config(cfg)
    remaining = cfg.rounds - done
    if remaining <= 0:
        LOGGER.info("all %d rounds are already completed in %s", cfg.rounds, run_dir)
        return None
    inner = build_inner_strategy(cfg, arrays)
    load_strategy_state(inner, strategy_state)
    metered = MeteredGrid(with_fast_replies(grid))
    tracked = ReplyTracker(metered)
    strategy = FederatedStrategy(
        cfg,
        inner,
        arrays,
        records=records,
        save_checkpoint=CheckpointWriter(cfg, records, model),
        round_offset=done,
        byte_counter=metered.take_counts,
        reply_tracker=tracked,
    )
    legacy = LegacyContext(
        context=context,
        config=FlowerServerConfig(num_rounds=remaining, round_timeout=cfg.round_timeout_s),
        strategy=strategy,
    )
    if cfg.secagg.enabled:
        num_shares, reconstruction_threshold = cfg.secagg.flower_share_counts()

        def secagg_pass() -> FullStrengthSecAggPlusWorkflow:
            return FullStrengthSecAggPlusWorkflow(
                num_shares=num_shares,
                reconstruction_threshold=reconstruction_threshold,
                clipping_range=cfg.secagg.clipping_range,
                quantization_range=cfg.secagg.quantization_range,
                max_weight=cfg.secagg.max_weight,
                # Every stage waits at most one round timeout: a lost site costs one timeout, not secagg.timeout_s more.
                timeout=min(cfg.secagg.timeout_s, cfg.round_timeout_s),
            )

        fit_workflow = secagg_pass()
        evaluate_workflow = SecureEvaluateWorkflow(secagg_pass(), cfg.secagg.clipping_range)
    else:
        fit_workflow = TimedFitWorkflow(cfg.round_timeout_s)
        evaluate_workflow = TimedEvaluateWorkflow(cfg.round_timeout_s)
    LOGGER.info("starting rounds %d..%d (%s, secagg=%s)", done + 1, cfg.rounds, cfg.strategy.name, cfg.secagg.enabled)
    DefaultWorkflow(fit_workflow=fit_workflow, evaluate_workflow=evaluate_workflow)(tracked, legacy)
    return strategy


def build_server_app(
    resolve_config: Callable[[Context], tuple[ServerConfig, Path, bool]] | None = None,
    model_factory: ModelFactory = default_model_factory,
) -> ServerApp:
    """A ServerApp whose configuration comes from `resolve_config` (default: run config / simulation dir)."""
    resolve = resolve_config or resolve_server_config
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        cfg, run_dir, resume = resolve(context)
        run_federation(grid, context, cfg, run_dir, resume, model_factory)

    return app


app = build_server_app()
