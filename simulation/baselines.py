"""Baselines trained with the project's own `train_local`: centralized, DP-centralized, local-only per site, image-only
(fusion ablation)."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from bcvlm_client.site_config import PrivacyBudgetConfig
from bcvlm_model.checkpoint import WEIGHTS_FILE, load_checkpoint
from bcvlm_model.features.training_hook import frozen_feature_training
from bcvlm_model.model import build_model, get_trainable_state, set_trainable_state
from bcvlm_model.model_config import ModelConfig
from bcvlm_model.privacy.accounting import noise_multiplier_for_budget
from bcvlm_model.privacy.dp_ready import make_dp_ready
from bcvlm_model.privacy.dp_ready_config import DPReadyConfig, DPUpdates
from bcvlm_model.privacy.dp_training import DPTrainState
from bcvlm_model.training.loaders import build_loader
from bcvlm_model.training.local_train_config import LocalTrainConfig
from bcvlm_model.training.loops import train_local
from bcvlm_simulation.config import SimulationConfig


@dataclass
class TrainingRecipe:
    """What every method shares: data pipeline, local-train settings, rounds, and what trains under DP."""

    preprocess: object
    text: object
    local_train: LocalTrainConfig
    rounds: int
    batch_size: int
    cache_dir: str | None
    dp_ready: DPReadyConfig | None
    """Trainable set of the federated (DP) model; applied to the baselines too so the same parameters train."""
    privacy: PrivacyBudgetConfig | None = None
    """A site budget when baselines train with DP-SGD (same budget as a site), else None."""
    seed: int = 0
    progress: bool = True
    init_checkpoints: dict[str, str] = field(default_factory=dict)
    """Model kind -> checkpoint folder whose trainable weights a new model of that kind starts from (public
    pretraining); kinds not listed start from the model's initialisation."""
    frozen_feature_root: str | None = None
    """Folder of the frozen-feature cache (the sites' `compute.frozen_feature_cache`), or None to run every frozen
    stage on every step. Every method freezes the same prefix, so they share its entries."""
    frozen_feature_dtype: str = "float16"


def frozen_feature_root(run_dir: str | Path, cache_dir: str | None) -> Path:
    """`<run_dir>/frozen_features/<cohort>`: one folder per image cache, since entries are named by image id."""
    cohort = hashlib.sha256(str(Path(cache_dir).resolve() if cache_dir else "").encode()).hexdigest()[:12]
    return Path(run_dir) / "frozen_features" / cohort


def recipe_from_config(cfg: SimulationConfig, cache_dir: str | None) -> TrainingRecipe:
    """The baselines' recipe: the federated run's preprocessing, text, local training, rounds, batch size and
    DP trainable set (so the same parameters train), DP-SGD only when `baselines.private`."""
    server = cfg.server
    return TrainingRecipe(
        preprocess=server.preprocess,
        text=server.text,
        local_train=server.local_train,
        rounds=server.rounds,
        batch_size=cfg.site.compute.batch_size,
        cache_dir=cache_dir,
        dp_ready=server.dp_trainable if server.dp_model else None,
        privacy=cfg.site.privacy if cfg.baselines.private else None,
        seed=cfg.seed,
        progress=cfg.progress,
        frozen_feature_root=(
            str(frozen_feature_root(cfg.run_dir, cache_dir)) if cfg.site.compute.frozen_feature_cache else None
        ),
        frozen_feature_dtype=str(cfg.site.compute.frozen_feature_dtype),
    )


def starting_model(model_cfg: ModelConfig, recipe: TrainingRecipe) -> nn.Module:
    """The model a baseline starts from: built, made DP-ready when the recipe trains under DP, and loaded with the
    recipe's starting checkpoint (the public pretraining) for its kind."""
    model = build_model(model_cfg)
    if recipe.dp_ready is not None:
        make_dp_ready(model, recipe.dp_ready)
    start = recipe.init_checkpoints.get(model_cfg.kind)
    if start:
        weights = Path(start) / WEIGHTS_FILE
        stamp = weights.stat().st_mtime_ns if weights.is_file() else 0
        set_trainable_state(model, _checkpoint_trainable_state(str(start), stamp))
    return model


@functools.lru_cache(maxsize=4)
def _checkpoint_trainable_state(folder: str, weights_mtime_ns: int) -> dict[str, torch.Tensor]:
    """Trainable weights of a checkpoint, read once per version of its weights file (local-only builds one model
    per site from it); `set_trainable_state` copies them, so the cached tensors are never changed."""
    return get_trainable_state(load_checkpoint(folder).model)


def _reproducible_noise(recipe: TrainingRecipe) -> bool:
    return recipe.privacy is not None and recipe.privacy.insecure_reproducible_noise


def _dp_state(recipe: TrainingRecipe, loader: DataLoader, steps_per_round: int) -> DPTrainState | None:
    """The DP settings spending the recipe's budget over its rounds, at the Poisson rate over `loader`'s records."""
    budget = recipe.privacy
    if budget is None or not budget.enabled:
        return None
    rate = 1.0 / len(loader)
    sigma = noise_multiplier_for_budget(
        budget.target_epsilon, budget.delta, rate, steps_per_round * recipe.rounds, budget.accountant
    )
    return DPTrainState(
        noise_multiplier=sigma,
        max_grad_norm=budget.max_grad_norm,
        delta=budget.delta,
        accountant=budget.accountant,
        updates=recipe.dp_ready.updates if recipe.dp_ready is not None else DPUpdates.all,
    )


@dataclass(frozen=True)
class PrivacySpent:
    """What a DP-trained baseline spent, from its own accountant (the figure metrics.json records)."""

    epsilon_spent: float
    target_epsilon: float
    delta: float
    noise_multiplier: float
    max_grad_norm: float
    unit: str
    accountant: str
    records: int
    """DP records in the training data (patients under `unit: patient`)."""
    steps: int


def train_reference(
    model_cfg: ModelConfig, train_table: pd.DataFrame, recipe: TrainingRecipe, steps_scale: int, label: str
) -> nn.Module:
    """Train one model for `recipe.rounds` train_local calls on `train_table`.

    Each call is one pass over the data when `local_train.local_steps == 0` (same epochs as the federated sites),
    else `local_steps * steps_scale` steps (steps_scale = number of sites for a model on their union).
    """
    return _train_reference(model_cfg, train_table, recipe, steps_scale, label)[0]


def _train_reference(
    model_cfg: ModelConfig, train_table: pd.DataFrame, recipe: TrainingRecipe, steps_scale: int, label: str
) -> tuple[nn.Module, PrivacySpent | None]:
    """`train_reference`, also returning the privacy its accountant recorded (None without DP)."""
    if train_table.empty:
        raise ValueError(f"{label}: no training rows")
    model = starting_model(model_cfg, recipe)
    private = recipe.privacy is not None and recipe.privacy.enabled
    loader = build_loader(
        train_table,
        recipe.preprocess,
        recipe.text,
        model_cfg,
        cache_dir=recipe.cache_dir,
        batch_size=recipe.batch_size,
        train=True,
        seed=recipe.seed,
        privacy_unit=recipe.privacy.unit if private else None,
    )
    records = len(loader.dataset)  # DP records (patients under unit=patient), before any frozen-feature loader
    steps = recipe.local_train.local_steps * steps_scale if recipe.local_train.local_steps else 0
    dp = _dp_state(recipe, loader, steps or len(loader))
    cfg = replace(recipe.local_train, local_steps=steps)
    module = model
    if recipe.frozen_feature_root is not None:
        cached = frozen_feature_training(
            model, loader, recipe.frozen_feature_root, recipe.preprocess, recipe.frozen_feature_dtype
        )
        if cached is not None:  # same parameters, batches carry the frozen prefix's outputs
            module, loader = cached.module, cached.loader
    epsilon_spent, steps_taken = None, 0
    for round_index in range(recipe.rounds):
        if dp is not None and _reproducible_noise(recipe):
            dp = replace(dp, insecure_seed=recipe.seed + round_index)
        result = train_local(
            module,
            loader,
            cfg,
            dp=dp,
            seed=recipe.seed + round_index,
            progress=recipe.progress,
            progress_label=f"{label} round {round_index + 1}/{recipe.rounds}",
        )
        steps_taken += result.steps
        if dp is not None:
            dp = replace(dp, accountant_state=result.accountant_state)
            epsilon_spent = result.epsilon_spent_total
    model.eval()
    if dp is None or epsilon_spent is None or recipe.privacy is None:
        return model, None
    spent = PrivacySpent(
        epsilon_spent=float(epsilon_spent),
        target_epsilon=recipe.privacy.target_epsilon,
        delta=dp.delta,
        noise_multiplier=dp.noise_multiplier,
        max_grad_norm=dp.max_grad_norm,
        unit=str(recipe.privacy.unit.value),
        accountant=str(dp.accountant.value),
        records=records,
        steps=steps_taken,
    )
    return model, spent


def train_centralized(
    model_cfg: ModelConfig, train_tables: Mapping[str, pd.DataFrame], recipe: TrainingRecipe, label: str = "centralized"
) -> nn.Module:
    """One model on the union of every site's training rows."""
    union = pd.concat(list(train_tables.values()), ignore_index=True)
    return train_reference(model_cfg, union, recipe, steps_scale=len(train_tables), label=label)


def train_dp_centralized(
    model_cfg: ModelConfig,
    train_tables: Mapping[str, pd.DataFrame],
    recipe: TrainingRecipe,
    budget: PrivacyBudgetConfig,
    label: str = "DP-centralized",
) -> tuple[nn.Module, PrivacySpent]:
    """One model on the union of every site's training rows under DP-SGD with one site's budget (epsilon, delta,
    clip, privacy unit): what federation would cost if one trusted place held all the data. Same trainable set and
    start as the federated run (the recipe's `dp_ready` and `init_checkpoints`).

    The batch grows with the number of sites and the steps do not: the sampling rate and step count stay a site's,
    so pooling divides each step's noise by the number of sites. Three times the steps at a site's batch instead
    would add three times the noisy steps at the same learning rate."""
    if not budget.enabled:
        raise ValueError(f"{label}: needs a DP budget (site.privacy.enabled=true)")
    union = pd.concat(list(train_tables.values()), ignore_index=True)
    pooled = replace(recipe, privacy=budget, batch_size=recipe.batch_size * len(train_tables))
    model, spent = _train_reference(model_cfg, union, pooled, steps_scale=1, label=label)
    if spent is None:
        raise RuntimeError(f"{label}: DP training recorded no privacy spent")
    return model, spent


def train_local_only(
    model_cfg: ModelConfig,
    train_tables: Mapping[str, pd.DataFrame],
    recipe: TrainingRecipe,
    on_model: Callable[[str, nn.Module], None],
) -> None:
    """One model per site on that site's rows alone; `on_model(site, model)` scores it before the next is built."""
    for site, table in train_tables.items():
        on_model(site, train_reference(model_cfg, table, recipe, steps_scale=1, label=f"local-only {site}"))
