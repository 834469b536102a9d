"""ReportCollator: dataset items -> model batch (stacked images, tokenized reports with explicit [B,T] ids, labels)."""

from __future__ import annotations

import random
import zlib
from typing import Any, Mapping, Sequence

import torch

from bcvlm_model.encoders.text_encoder import load_tokenizer, position_id_offset, resolve_text_encoder_path
from bcvlm_model.text.report_config import TextConfig
from bcvlm_model.text.report_template import ReportTemplate


class ReportCollator:
    """Collate `{"image", "metadata", "labels", "image_id"}` items into the model's batch dict.

    Returns `{"image": [B,1,H,W] NCHW-contiguous, "input_ids", "attention_mask", "token_type_ids",
    "position_ids": [B,T] int64, "labels": [B,2] float (NaN = missing), "image_id": list[str]}`.
    Explicit [B,T] `token_type_ids`/`position_ids` are required by Opacus (a [1,T] buffer breaks per-sample grads).
    With `train=True` the report is augmented; the randomness depends only on (seed, image_id, call count),
    so runs are reproducible and DataLoader workers do not repeat each other's choices.
    """

    def __init__(
        self,
        template_cfg: TextConfig,
        tokenizer_dir: str | None = None,
        max_length: int | None = None,
        train: bool = False,
        seed: int = 0,
    ) -> None:
        self.template = ReportTemplate(template_cfg)
        folder = resolve_text_encoder_path(tokenizer_dir if tokenizer_dir is not None else template_cfg.tokenizer)
        self.tokenizer = load_tokenizer(folder)
        self.position_offset = position_id_offset(folder)
        self.max_length = int(max_length if max_length is not None else template_cfg.max_length)
        if self.max_length < 4:
            raise ValueError(f"max_length={self.max_length} is too short for a report")
        self.train = train
        self.seed = seed
        self._calls = 0

    def _rng_for(self, image_id: str) -> random.Random | None:
        if not self.train:
            return None
        return random.Random(zlib.crc32(f"{self.seed}|{image_id}|{self._calls}".encode()))

    def render_batch(self, items: Sequence[Mapping[str, Any]]) -> list[str]:
        """The report text of each item (augmented when train=True)."""
        return [
            self.template.render(item["metadata"], self._rng_for(str(item.get("image_id", index))))
            for index, item in enumerate(items)
        ]

    def tokenize(self, reports: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenize reports into [B,T] input_ids, attention_mask, token_type_ids, position_ids."""
        encoded = self.tokenizer(
            list(reports), padding="longest", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        input_ids = encoded["input_ids"].long()
        batch, length = input_ids.shape
        positions = torch.arange(length, dtype=torch.long) + self.position_offset
        return {
            "input_ids": input_ids.contiguous(),
            "attention_mask": encoded["attention_mask"].long().contiguous(),
            "token_type_ids": torch.zeros(batch, length, dtype=torch.long),
            "position_ids": positions.unsqueeze(0).expand(batch, length).contiguous(),
        }

    def __call__(self, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if len(items) == 0:
            raise ValueError("ReportCollator got an empty list of items")
        for key in ("image", "metadata", "labels"):
            if key not in items[0]:
                raise KeyError(f"dataset item has no '{key}' (keys: {sorted(items[0])})")
        reports = self.render_batch(items)
        self._calls += 1
        images = torch.stack([torch.as_tensor(item["image"], dtype=torch.float32) for item in items])
        if images.dim() != 4:
            raise ValueError(f"images must be [1,H,W] each, got a stacked shape {tuple(images.shape)}")
        labels = torch.stack([torch.as_tensor(item["labels"], dtype=torch.float32) for item in items])
        batch = {
            "image": images.contiguous(memory_format=torch.contiguous_format),
            **self.tokenize(reports),
            "labels": labels,
            "image_id": [str(item.get("image_id", "")) for item in items],
        }
        return batch
