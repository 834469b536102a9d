"""Checkpoints: identical outputs after a round trip, config contents, no unpickling, clear errors."""

from __future__ import annotations

import json

import pytest
import torch

from bcvlm_model.atomic_io import read_json
from bcvlm_model.checkpoint import load_checkpoint, save_checkpoint
from bcvlm_model.data.preprocess_config import PreprocessConfig
from bcvlm_model.model_inputs import MODEL_INPUT_KEYS
from bcvlm_model.text import TEMPLATE_VERSION, TextConfig


def test_round_trip_gives_identical_outputs(tmp_path, model_factory, tiny_batch: dict, monkeypatch) -> None:
    model = model_factory("vlm").eval()
    with torch.no_grad():
        for parameter in model.head.parameters():
            parameter.add_(0.25)  # make the state differ from a fresh build
    preprocess = PreprocessConfig(image_height=128, image_width=64)
    save_checkpoint(tmp_path, model, model.cfg, preprocess, TextConfig(mask_probability=0.3), {"threshold": 0.42})
    config = read_json(tmp_path / "config.json")
    assert config["text_template_version"] == TEMPLATE_VERSION and "density" in config["text_fields"]
    assert config["preprocess"]["image_height"] == 128 and config["extra"] == {"threshold": 0.42}

    def no_pickle(*args, **kwargs):
        raise AssertionError("load_checkpoint must not unpickle")

    monkeypatch.setattr(torch, "load", no_pickle)
    loaded = load_checkpoint(tmp_path)
    inputs = {key: tiny_batch[key] for key in MODEL_INPUT_KEYS}
    with torch.no_grad():
        assert torch.equal(model(**inputs), loaded.model(**inputs))
    assert loaded.preprocess_cfg == preprocess and loaded.text_cfg.mask_probability == 0.3
    assert loaded.extra == {"threshold": 0.42} and (loaded.tokenizer_dir / "vocab.txt").is_file()
    assert [n for n, p in loaded.model.named_parameters() if p.requires_grad] == [
        n for n, p in model.named_parameters() if p.requires_grad
    ]


def test_missing_files_are_clear_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_checkpoint(tmp_path)


def test_a_checkpoint_written_with_the_removed_model_settings_still_loads(tmp_path, model_factory) -> None:
    model = model_factory("image_only").eval()
    save_checkpoint(tmp_path, model, model.cfg, PreprocessConfig(image_height=128, image_width=64), TextConfig())
    config = read_json(tmp_path / "config.json")
    config["model"]["autocast_bf16"] = False
    config["model"]["image_encoder"]["vit_img_size"] = [2048, 1024]
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = load_checkpoint(tmp_path).model_cfg
    assert (loaded.kind, loaded.image_encoder, loaded.fusion) == (
        model.cfg.kind,
        model.cfg.image_encoder,
        model.cfg.fusion,
    )


def test_drop_site_fields_travels_in_the_checkpoint(tmp_path, model_factory) -> None:
    model = model_factory("vlm").eval()
    text = TextConfig(drop_site_fields=True)
    save_checkpoint(tmp_path, model, model.cfg, PreprocessConfig(image_height=128, image_width=64), text, {})
    assert read_json(tmp_path / "config.json")["text"]["drop_site_fields"] is True
    assert load_checkpoint(tmp_path).text_cfg.drop_site_fields is True
