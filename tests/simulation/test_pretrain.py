"""Public pretraining: checkpoints per model kind, and the baselines start from exactly those weights."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from bcvlm_model.checkpoint import load_checkpoint
from bcvlm_model.model import get_trainable_state
from bcvlm_simulation.baselines import recipe_from_config, starting_model
from bcvlm_simulation.config import ConfigError, load_simulation_config
from bcvlm_simulation.pretrain import pretrain_on_public, pretraining_recipe
from bcvlm_simulation.runner import SimulationError, run_simulation_job


def test_pretrained_weights_reach_the_baselines(tmp_path: Path) -> None:
    cfg = load_simulation_config(
        "tiny",
        [
            f"run_dir={tmp_path}",
            "pretrain.enabled=true",
            "pretrain.epochs=1",
            "pretrain.cohort.synth.n_patients=4",
            "pretrain.cohort.synth.height=64",
            "pretrain.cohort.synth.width=32",
            "progress=false",
            "server.local_train.learning_rate=0.05",
        ],
    )
    checkpoints = pretrain_on_public(cfg, ["vlm", "image_only", "vlm"])
    assert sorted(checkpoints) == ["image_only", "vlm"]
    assert (tmp_path / "public_cohort" / "prepared" / "manifest.csv").is_file()
    assert any((tmp_path / "frozen_features").rglob("*.npz"))  # in the run folder, not in one relative to the cwd
    pretrained = get_trainable_state(load_checkpoint(checkpoints["vlm"]).model)
    torch.manual_seed(0)
    fresh = get_trainable_state(starting_model(cfg.server.model, recipe_from_config(cfg, None)))
    assert pretrained.keys() == fresh.keys()
    assert any(not torch.equal(pretrained[name], fresh[name]) for name in pretrained), "pretraining changed nothing"

    recipe = replace(recipe_from_config(cfg, None), init_checkpoints=checkpoints)
    started = get_trainable_state(starting_model(cfg.server.model, recipe))
    assert all(torch.equal(started[name], pretrained[name]) for name in pretrained)
    image_cfg = replace(cfg.server.model, kind="image_only")
    image_started = get_trainable_state(starting_model(image_cfg, recipe))
    image_pretrained = get_trainable_state(load_checkpoint(checkpoints["image_only"]).model)
    assert all(torch.equal(image_started[name], image_pretrained[name]) for name in image_pretrained)


def test_pretraining_has_its_own_optimizer_and_learning_rate_and_no_dp() -> None:
    own = load_simulation_config(
        "tiny",
        [
            "pretrain.optimizer=adamw",
            "pretrain.learning_rate=0.003",
            "server.local_train.optimizer=sgd",
            "server.local_train.learning_rate=0.05",
            "pretrain.epochs=2",
            "site.privacy.enabled=true",
            "baselines.private=true",
        ],
    )
    recipe = pretraining_recipe(own, None)
    assert (recipe.local_train.optimizer, recipe.local_train.learning_rate) == ("adamw", 0.003)
    assert (own.server.local_train.optimizer, own.server.local_train.learning_rate) == ("sgd", 0.05)
    assert recipe.rounds == 2 and recipe.privacy is None and recipe.init_checkpoints == {}
    shared = load_simulation_config(
        "tiny", ["server.local_train.optimizer=sgd", "server.local_train.learning_rate=0.05"]
    )
    assert shared.pretrain.optimizer is None and shared.pretrain.learning_rate is None
    assert (
        pretraining_recipe(shared, None).local_train.optimizer,
        pretraining_recipe(shared, None).local_train.learning_rate,
    ) == ("sgd", 0.05)


@pytest.mark.parametrize("override", ["pretrain.learning_rate=0", "pretrain.epochs=0", "pretrain.optimizer=adam"])
def test_bad_pretraining_settings_are_refused_at_load(override: str) -> None:
    with pytest.raises(ConfigError, match=override.split("=")[0]):
        load_simulation_config("tiny", [override])


def test_pretraining_and_an_init_checkpoint_are_refused_before_anything_is_touched(tmp_path: Path) -> None:
    earlier = tmp_path / "run" / "federated"
    earlier.mkdir(parents=True)
    cfg = load_simulation_config(
        "tiny",
        [
            f"run_dir={tmp_path / 'run'}",
            "overwrite=true",
            "pretrain.enabled=true",
            f"server.init_checkpoint={tmp_path / 'some_checkpoint'}",
        ],
    )
    with pytest.raises(SimulationError, match="pick one start"):
        run_simulation_job(cfg)
    assert earlier.is_dir()  # the earlier run's output was not removed
    assert not (tmp_path / "run" / "cohort").exists()
