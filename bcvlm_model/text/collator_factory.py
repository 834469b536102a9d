"""The one tokenizer rule and ReportCollator factory: which tokenizer a model's reports are tokenized with."""

from __future__ import annotations

import os

from bcvlm_model.model_config import PACKAGE_DEFAULT, ModelConfig
from bcvlm_model.text.collator import ReportCollator
from bcvlm_model.text.report_config import TextConfig


def tokenizer_folder(text: TextConfig, model_cfg: ModelConfig) -> str:
    """The text config's own tokenizer, or (PACKAGE_DEFAULT) the model's text encoder folder: ids the model knows."""
    return str(model_cfg.text_encoder.path) if text.tokenizer == PACKAGE_DEFAULT else str(text.tokenizer)


def build_report_collator(
    text: TextConfig,
    model_cfg: ModelConfig,
    *,
    train: bool,
    seed: int = 0,
    tokenizer_dir: str | os.PathLike[str] | None = None,
) -> ReportCollator:
    """The collator for `model_cfg`'s reports; `tokenizer_dir` (a checkpoint's own tokenizer copy) wins over the rule."""
    folder = str(tokenizer_dir) if tokenizer_dir else tokenizer_folder(text, model_cfg)
    return ReportCollator(text, tokenizer_dir=folder, train=train, seed=seed)
