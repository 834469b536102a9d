"""The tokenizer rule: a model's reports are tokenized with its own text encoder's tokenizer unless the text config
names another; a checkpoint's own tokenizer copy wins."""

from __future__ import annotations

from dataclasses import replace

from bcvlm_model.encoders.text_encoder import resolve_text_encoder_path
from bcvlm_model.model_config import ModelConfig, TextEncoderConfig
from bcvlm_model.text import TextConfig
from bcvlm_model.text.collator_factory import build_report_collator, tokenizer_folder


def test_the_default_tokenizer_is_the_models_text_encoder() -> None:
    model = ModelConfig(text_encoder=TextEncoderConfig(path="/models/bert"))
    assert tokenizer_folder(TextConfig(), model) == "/models/bert"


def test_a_tokenizer_named_in_the_text_config_wins_over_the_model() -> None:
    model = ModelConfig(text_encoder=TextEncoderConfig(path="/models/bert"))
    assert tokenizer_folder(TextConfig(tokenizer="/models/other"), model) == "/models/other"


def test_a_checkpoints_own_tokenizer_copy_wins_over_the_rule(make_items) -> None:
    own_copy = resolve_text_encoder_path(TextConfig().tokenizer)
    text = replace(TextConfig(), tokenizer="/nonexistent/tokenizer")  # the rule alone would fail to load this
    collator = build_report_collator(text, ModelConfig(), train=False, tokenizer_dir=own_copy)
    assert collator(make_items(2))["input_ids"].shape[0] == 2
