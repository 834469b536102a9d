"""ModelConfig: validation names the key; baseline configs switch only what they should; YAML loading works."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bcvlm_model.config_io import ConfigError, load_config
from bcvlm_model.model_config import FusionConfig, ModelConfig, ModelKind, baseline_config


def test_a_kind_built_in_code_is_checked_against_the_enum() -> None:
    with pytest.raises(ConfigError, match=r"key 'model.kind': invalid value 'fusion', expected one of vlm, image_only"):
        ModelConfig(kind="fusion")


def test_fusion_width_must_divide_into_heads() -> None:
    with pytest.raises(ConfigError, match=r"model.fusion.dim': 30 must be divisible"):
        FusionConfig(dim=30, heads=4)


def test_a_yaml_with_a_bad_kind_fails_at_load_naming_key_and_allowed_values(tmp_path) -> None:
    path = tmp_path / "model.yaml"
    path.write_text("kind: fusion\n")
    with pytest.raises(ConfigError, match=r"key 'kind'.*'fusion'.*vlm, image_only, text_only, late_concat"):
        load_config(ModelConfig, path)


@pytest.mark.parametrize(
    "text, name",
    [("autocast_bf16: true", "autocast_bf16"), ("image_encoder:\n  vit_img_size: [64, 32]", "vit_img_size")],
)
def test_a_yaml_setting_a_removed_knob_fails_at_load_naming_it(tmp_path, text, name) -> None:
    path = tmp_path / "model.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match=f"key '[a-z_.]*{name}'"):
        load_config(ModelConfig, path)


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
    assert (cfg.kind, cfg.fusion.dim, cfg.text_encoder.num_layers) == (ModelKind.late_concat, 64, 2)
