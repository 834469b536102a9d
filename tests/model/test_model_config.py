"""ModelConfig: validation names the key; baseline configs switch only what they should; YAML loading works."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bcvlm_model.config_io import load_config
from bcvlm_model.model_config import FusionConfig, ModelConfig, baseline_config, validate_model_config


def test_validation_names_the_key() -> None:
    with pytest.raises(ValueError, match="model.kind='fusion'"):
        validate_model_config(ModelConfig(kind="fusion"))
    with pytest.raises(ValueError, match="model.fusion.dim=30"):
        validate_model_config(ModelConfig(fusion=FusionConfig(dim=30, heads=4)))


def test_baselines() -> None:
    base = ModelConfig()
    assert baseline_config("late_concat", base) == replace(base, kind="late_concat")
    vit = baseline_config("vit", base)
    assert (
        vit.kind == "image_only" and vit.image_encoder.name.startswith("vit_") and vit.image_encoder.weights == "none"
    )
    assert vit.image_encoder.feature_stages == [-1]
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline_config("resnet")


def test_loads_from_yaml_with_overrides(tmp_path) -> None:
    path = tmp_path / "model.yaml"
    path.write_text("kind: late_concat\nfusion:\n  dim: 64\n")
    cfg = load_config(ModelConfig, path, ["text_encoder.num_layers=2"])
    assert (cfg.kind, cfg.fusion.dim, cfg.text_encoder.num_layers) == ("late_concat", 64, 2)
