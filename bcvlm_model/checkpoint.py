"""Checkpoints without pickle: model.safetensors + config.json (model, preprocessing, text template, extra) + tokenizer files."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, is_dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bcvlm_model.atomic_io import atomic_write_bytes, atomic_write_json, read_json
from bcvlm_model.config_io import config_from_dict, config_to_dict
from bcvlm_model.encoders.text_encoder import resolve_text_encoder_path
from bcvlm_model.model_config import ModelConfig
from bcvlm_model.parameters import _unwrap
from bcvlm_model.text.report_config import TEMPLATE_VERSION, TextConfig

CHECKPOINT_FORMAT = "bcvlm-checkpoint/1"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TEXT_ENCODER_DIR = "text_encoder"
"""Sub-folder holding the text encoder's config and tokenizer files (no weights), so the checkpoint is standalone."""
TOKENIZER_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
    "spm.model",
)


@dataclass
class LoadedCheckpoint:
    """What `load_checkpoint` returns: the rebuilt model (eval mode) and everything needed for its input pipeline."""

    model: nn.Module
    model_cfg: ModelConfig
    preprocess_cfg: Any
    text_cfg: TextConfig
    extra: dict[str, Any] = field(default_factory=dict)
    tokenizer_dir: Path | None = None


def _model_cfg_from_dict(payload: dict[str, Any]) -> ModelConfig:
    """The checkpoint's ModelConfig. Two settings removed since are dropped: `autocast_bf16` never changed weights
    (precision is the caller's now); `vit_img_size` shaped only a ViT's position grid, so an older ViT checkpoint
    then fails the weight check below with a clear error, while every ConvNet checkpoint loads unchanged."""
    model = {key: value for key, value in payload.items() if key != "autocast_bf16"}
    if isinstance(model.get("image_encoder"), dict):
        model["image_encoder"] = {k: v for k, v in model["image_encoder"].items() if k != "vit_img_size"}
    return config_from_dict(ModelConfig, model)


def _preprocess_to_dict(preprocess_cfg: Any) -> dict[str, Any]:
    if preprocess_cfg is None:
        return {}
    if isinstance(preprocess_cfg, dict):
        return dict(preprocess_cfg)
    if is_dataclass(preprocess_cfg):
        return config_to_dict(preprocess_cfg)
    raise TypeError(f"preprocess_cfg must be a PreprocessConfig or a dict, got {type(preprocess_cfg).__name__}")


def _preprocess_from_dict(payload: dict[str, Any]) -> Any:
    try:
        from bcvlm_model.data.preprocess_config import PreprocessConfig
    except ImportError:
        return payload
    return config_from_dict(PreprocessConfig, payload) if payload else PreprocessConfig()


def _copy_tokenizer_files(source: Path, target: Path) -> None:
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            atomic_write_bytes(target / name, (source / name).read_bytes())


def save_checkpoint(
    directory: str | os.PathLike[str],
    model: nn.Module,
    model_cfg: ModelConfig,
    preprocess_cfg: Any,
    text_cfg: TextConfig,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write `model.safetensors` (full state: trainable and frozen), `config.json` and the tokenizer files.

    Each file is written atomically; config.json is written last, so a directory with a config.json is complete.
    """
    from safetensors.torch import save

    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    module = _unwrap(model)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in module.state_dict().items()}
    atomic_write_bytes(target / WEIGHTS_FILE, save(state, metadata={"format": CHECKPOINT_FORMAT}))
    if model_cfg.kind != "image_only":
        _copy_tokenizer_files(resolve_text_encoder_path(model_cfg.text_encoder.path), target / TEXT_ENCODER_DIR)
    atomic_write_json(
        target / CONFIG_FILE,
        {
            "format": CHECKPOINT_FORMAT,
            "model": config_to_dict(model_cfg),
            "preprocess": _preprocess_to_dict(preprocess_cfg),
            "text": config_to_dict(text_cfg),
            "text_template_version": TEMPLATE_VERSION,
            "text_fields": list(text_cfg.fields),
            "trainable_parameters": [name for name, p in module.named_parameters() if p.requires_grad],
            "extra": dict(extra or {}),
        },
    )
    return target


def load_checkpoint(directory: str | os.PathLike[str], device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild the model from a checkpoint directory (safetensors + JSON only; nothing is unpickled)."""
    from safetensors.torch import load_file

    from bcvlm_model.model import build_model

    source = Path(directory)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (source / name).is_file():
            raise FileNotFoundError(f"checkpoint {source} has no {name}")
    payload = read_json(source / CONFIG_FILE)
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{source / CONFIG_FILE}: format {payload.get('format')!r}, expected {CHECKPOINT_FORMAT!r}")
    model_cfg = _model_cfg_from_dict(payload["model"])
    text_cfg = config_from_dict(TextConfig, payload["text"])
    if payload.get("text_template_version") != TEMPLATE_VERSION:
        raise ValueError(
            f"checkpoint renders text with template {payload.get('text_template_version')!r}; "
            f"this code has template {TEMPLATE_VERSION!r}"
        )
    tokenizer_dir = None
    if (source / TEXT_ENCODER_DIR).is_dir():
        tokenizer_dir = source / TEXT_ENCODER_DIR
        model_cfg = replace(model_cfg, text_encoder=replace(model_cfg.text_encoder, path=str(tokenizer_dir)))
    model = build_model(model_cfg, pretrained=False)
    trainable = set(payload.get("trainable_parameters", []))
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name in trainable)
    missing, unexpected = model.load_state_dict(load_file(str(source / WEIGHTS_FILE)), strict=False)
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {source} does not fit its config: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    model.to(device).eval()
    return LoadedCheckpoint(
        model,
        model_cfg,
        _preprocess_from_dict(payload["preprocess"]),
        text_cfg,
        payload.get("extra", {}),
        tokenizer_dir,
    )
