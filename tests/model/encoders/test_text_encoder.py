"""Text encoder: offline package default, truncation, trainable layers, clear errors for bad folders."""

from __future__ import annotations

import json

import pytest

from bcvlm_model.encoders.text_encoder import load_text_encoder, resolve_text_encoder_path
from bcvlm_model.model_config import PACKAGE_DEFAULT, TextEncoderConfig


def test_package_default_is_minilm_and_truncates() -> None:
    model = load_text_encoder(TextEncoderConfig(num_layers=2, trainable_layers=1))
    assert model.config.hidden_size == 384 and len(model.encoder.layer) == 2
    assert model.pooler is None
    trainable = {name.split(".")[2] for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"1"}
    assert not any(p.requires_grad for p in model.embeddings.parameters())


def test_any_local_bert_folder_is_accepted(tmp_path) -> None:
    source = resolve_text_encoder_path(PACKAGE_DEFAULT)
    for name in ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).symlink_to(source / name)
    model = load_text_encoder(TextEncoderConfig(path=str(tmp_path), num_layers=1))
    assert len(model.encoder.layer) == 1


def test_missing_folder_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="text encoder folder not found"):
        resolve_text_encoder_path(str(tmp_path / "clinical-bert"))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        resolve_text_encoder_path(str(tmp_path))


def test_non_bert_model_is_refused(tmp_path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match="BERT-family"):
        load_text_encoder(TextEncoderConfig(path=str(tmp_path)))


def test_too_many_layers_is_refused() -> None:
    with pytest.raises(ValueError, match="num_layers=9"):
        load_text_encoder(TextEncoderConfig(num_layers=9))
