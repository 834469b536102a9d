"""The baselines train exactly the parameters the federated model trains, with DP only when asked."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from bcvlm_client.site_config import load_site_config
from bcvlm_model.data.manifest import read_manifest
from bcvlm_model.parameters import get_trainable_state
from bcvlm_model.privacy.dp_ready_config import DPReadyConfig
from bcvlm_model.privacy.federated_model import build_federated_model
from bcvlm_simulation.baselines import (
    TrainingRecipe,
    recipe_from_config,
    starting_model,
    train_dp_centralized,
    train_reference,
)
from bcvlm_simulation.config import load_simulation_config
from bcvlm_testing.federation_sites import make_site, tiny_model_config, tiny_preprocess


def _trainable(model: nn.Module) -> set[str]:
    return {name for name, parameter in model.named_parameters() if parameter.requires_grad}


def test_baselines_train_the_federated_trainable_set() -> None:
    cfg = load_simulation_config("tiny", ["server.dp_trainable.image_trainable_stages=0"])
    recipe = recipe_from_config(cfg, cache_dir=None)
    assert recipe.dp_ready == DPReadyConfig(image_trainable_stages=0, text_trainable_layers=0)
    federated = _trainable(build_federated_model(cfg.server.model, cfg.server.dp_trainable))
    baseline = _trainable(starting_model(cfg.server.model, recipe))
    assert baseline == federated
    assert not any(name.startswith("image_backbone.") for name in baseline)
    # A different DP trainable set reaches the baselines too (the default trains the last image stage).
    wider = recipe_from_config(load_simulation_config("tiny"), cache_dir=None)
    assert any(name.startswith("image_backbone.") for name in _trainable(starting_model(cfg.server.model, wider)))


def test_baselines_are_private_only_when_asked() -> None:
    cfg = load_simulation_config("tiny")
    assert recipe_from_config(cfg, None).privacy is None
    private = load_simulation_config("tiny", ["baselines.private=true"])
    assert recipe_from_config(private, None).privacy == private.site.privacy
    no_dp_model = replace(cfg, server=replace(cfg.server, dp_model=False))
    assert recipe_from_config(no_dp_model, None).dp_ready is None


def test_a_baseline_trained_from_the_frozen_feature_cache_matches_the_plain_one(tmp_path) -> None:
    site_yaml = make_site(tmp_path, "site", n_train=16)
    site = load_site_config(site_yaml)
    table = read_manifest(site.data.manifest).query("split == 'train'").reset_index(drop=True)
    cfg = load_simulation_config("tiny", ["server.dp_trainable.image_trainable_stages=0"])
    recipe = replace(
        recipe_from_config(cfg, site.data.cache_dir),
        preprocess=tiny_preprocess(),
        rounds=2,
        frozen_feature_dtype="float32",
    )
    model_cfg = tiny_model_config()
    torch.manual_seed(0)  # the fusion and heads start from the same random initialisation in both runs
    plain = train_reference(model_cfg, table, replace(recipe, frozen_feature_root=None), 1, "plain")
    root = tmp_path / "frozen"
    torch.manual_seed(0)
    cached = train_reference(model_cfg, table, replace(recipe, frozen_feature_root=str(root)), 1, "cached")
    assert any(root.rglob("*.npz"))  # the cache was written and read
    plain_state, cached_state = get_trainable_state(plain), get_trainable_state(cached)
    assert max(float((plain_state[k] - cached_state[k]).abs().max()) for k in plain_state) < 1e-4


def _dp_recipe(cache_dir: str | None) -> TrainingRecipe:
    """The tiny simulation's recipe over the test harness images: 2 rounds, no frozen-feature cache."""
    cfg = load_simulation_config("tiny", ["server.dp_trainable.image_trainable_stages=0"])
    recipe = recipe_from_config(cfg, cache_dir)
    return replace(
        recipe, preprocess=tiny_preprocess(), rounds=2, batch_size=4, progress=False, frozen_feature_root=None
    )


def test_dp_centralized_spends_at_most_the_site_budget_on_patients(tmp_path) -> None:
    site = load_site_config(make_site(tmp_path, "site", n_train=16, images_per_patient=2))
    table = read_manifest(site.data.manifest).query("split == 'train'").reset_index(drop=True)
    first = table["patient_id"].isin(sorted(table["patient_id"].unique())[:4])  # two "sites" of 4 patients each
    tables = {"a": table[first].reset_index(drop=True), "b": table[~first].reset_index(drop=True)}
    budget = replace(site.privacy, target_epsilon=2.0, delta=1e-3)
    _, spent = train_dp_centralized(tiny_model_config(), tables, _dp_recipe(site.data.cache_dir), budget)
    assert 1.0 < spent.epsilon_spent <= 2.0 * (1 + 1e-6)  # the noise is sized to the budget, not far below it
    assert spent.records == 8 and spent.unit == "patient"  # the union's patients are the DP records
    assert spent.steps > 0 and spent.noise_multiplier > 0


def test_dp_centralized_takes_a_sites_steps_with_the_sites_batches_pooled(tmp_path) -> None:
    site = load_site_config(make_site(tmp_path, "site", n_train=16, images_per_patient=2))
    table = read_manifest(site.data.manifest).query("split == 'train'").reset_index(drop=True)
    first = table["patient_id"].isin(sorted(table["patient_id"].unique())[:4])
    tables = {"a": table[first].reset_index(drop=True), "b": table[~first].reset_index(drop=True)}
    recipe = _dp_recipe(site.data.cache_dir)
    budget = replace(site.privacy, target_epsilon=2.0, delta=1e-3)
    _, spent = train_dp_centralized(tiny_model_config(), tables, recipe, budget)
    assert spent.steps == recipe.rounds * recipe.local_train.local_steps  # a site's steps, not one per site


def test_dp_centralized_refuses_a_disabled_budget() -> None:
    cfg = load_simulation_config("tiny")
    with pytest.raises(ValueError, match="site.privacy.enabled"):
        train_dp_centralized(tiny_model_config(), {}, _dp_recipe(None), replace(cfg.site.privacy, enabled=False))
