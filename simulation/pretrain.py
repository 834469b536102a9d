"""Public pretraining: train each model kind non-privately on a public cohort; the federated run and the
baselines start from those weights (the usual recipe before DP-SGD on private data)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Iterable

from bcvlm_model.checkpoint import save_checkpoint
from bcvlm_simulation.baselines import TrainingRecipe, recipe_from_config, train_reference
from bcvlm_simulation.cohort import load_cohort
from bcvlm_simulation.config import SimulationConfig


def pretrain_dir(run_dir: Path, kind: str) -> Path:
    """`<run_dir>/pretrain/<kind>`: the public checkpoint of one model kind."""
    return run_dir / "pretrain" / kind


def pretraining_recipe(cfg: SimulationConfig, cache_dir: str | None) -> TrainingRecipe:
    """The baselines' recipe without DP, from the model's initialisation, `pretrain.epochs` passes over the data,
    with `pretrain.optimizer` and `pretrain.learning_rate` (defaults: the private training's)."""
    private = cfg.server.local_train
    local_train = replace(
        private,
        local_steps=0,
        optimizer=cfg.pretrain.optimizer or private.optimizer,
        learning_rate=cfg.pretrain.learning_rate or private.learning_rate,
    )
    return replace(
        recipe_from_config(cfg, cache_dir),
        rounds=cfg.pretrain.epochs,
        privacy=None,
        local_train=local_train,
        init_checkpoints={},
    )


def pretrain_on_public(cfg: SimulationConfig, kinds: Iterable[str]) -> dict[str, str]:
    """Train every model kind in `kinds` on all rows of the public cohort (`pretraining_recipe`: no DP, the private
    training's trainable set and batch size) for `pretrain.epochs` passes; return {kind: checkpoint folder}. All it
    writes (cohort, frozen features, checkpoints) goes under `cfg.run_dir`."""
    run_dir = Path(cfg.run_dir).resolve()
    manifest, cache_dir = load_cohort(
        cfg.pretrain.cohort, cfg.server.preprocess, run_dir / "public_cohort", cfg.progress
    )
    recipe = pretraining_recipe(cfg, cache_dir)
    checkpoints: dict[str, str] = {}
    for kind in dict.fromkeys(kinds):
        model_cfg = replace(cfg.server.model, kind=kind)
        print(
            f"[simulate] public pretraining: {kind} on {len(manifest)} public images, {cfg.pretrain.epochs} epochs",
            flush=True,
        )
        model = train_reference(model_cfg, manifest, recipe, steps_scale=1, label=f"public pretraining {kind}")
        folder = pretrain_dir(run_dir, kind)
        save_checkpoint(
            folder,
            model,
            model_cfg,
            cfg.server.preprocess,
            cfg.server.text,
            extra={
                "pretrained_on": cfg.pretrain.cohort.manifest or "synthetic public cohort",
                "epochs": cfg.pretrain.epochs,
            },
        )
        checkpoints[kind] = str(folder)
    return checkpoints
