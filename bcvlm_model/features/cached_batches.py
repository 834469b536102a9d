"""Batches from the frozen-feature cache: a collate wrapper that swaps pixels/tokens for cached prefix outputs.

`FrozenFeatureCollator` calls the site's own collator first (so report rendering, its augmentation randomness and
any extra batch field, e.g. a patient index, are exactly as without the cache), then replaces `image` by the cached
image-prefix outputs (looked up by `image_id` and a digest of the pixels, so an image that changed under the same
id, e.g. a cohort generated or a cache prepared again, is computed afresh and never served stale) and the token tensors by the cached text hidden state (looked up by
the report's token ids, so every augmented rendering is its own entry). Records not cached yet are computed with
the model's frozen prefix and stored. `warm_image_cache` fills the image side for a whole dataset up front.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any, Callable, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from bcvlm_model.features.cached_model import FROZEN_IMAGE_KEY, TEXT_HIDDEN_KEY, frozen_tap_key
from bcvlm_model.features.frozen_cache import FrozenFeatureStore
from bcvlm_model.features.frozen_prefix import (
    FrozenPrefixPlan,
    image_prefix_outputs,
    text_prefix_outputs,
    valid_token_count,
)

TEXT_MEMORY_ENTRIES = 4096
"""Text entries also kept in memory (a few MB each thousand): reports repeat within a round more than across."""


def image_entry_name(image_id: str, image: torch.Tensor) -> str:
    """An image entry's name: the record's id and a digest of the pixels the prefix is computed from."""
    pixels = image.detach().to(torch.float32).contiguous().cpu().numpy().tobytes()
    return f"{image_id}-{hashlib.blake2b(pixels, digest_size=8).hexdigest()}"


def text_entry_name(input_ids: torch.Tensor, token_type_ids: torch.Tensor, position_ids: torch.Tensor) -> str:
    """Entry name of one report's valid tokens: a hash of its ids (tokenizer/template changes give new names)."""
    digest = hashlib.sha256()
    for tensor in (input_ids, token_type_ids, position_ids):
        digest.update(tensor.detach().to("cpu", torch.int64).contiguous().numpy().tobytes())
        digest.update(b"|")
    return digest.hexdigest()[:32]


class FrozenFeatureCollator:
    """Collate with `inner`, then put cached frozen-prefix outputs in place of the pixels and token ids."""

    def __init__(
        self,
        inner: Callable[[Sequence[Any]], dict[str, Any]],
        model: nn.Module,
        plan: FrozenPrefixPlan,
        image_store: FrozenFeatureStore | None,
        text_store: FrozenFeatureStore | None,
    ) -> None:
        if plan.caches_image != (image_store is not None) or plan.text_cached != (text_store is not None):
            raise ValueError("FrozenFeatureCollator: a store is needed for exactly the cached parts of the plan")
        self.inner = inner
        self.model = model
        self.plan = plan
        self.image_store = image_store
        self.text_store = text_store
        self._text_memory: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.hits = {"image": 0, "text": 0}
        self.misses = {"image": 0, "text": 0}

    def __call__(self, items: Sequence[Any]) -> dict[str, Any]:
        batch = dict(self.inner(items))
        if self.image_store is not None:
            self._swap_image(batch)
        if self.text_store is not None:
            self._swap_text(batch)
        return batch

    def _swap_image(self, batch: dict[str, Any]) -> None:
        if "image_id" not in batch:
            raise KeyError("frozen-feature cache needs 'image_id' in every batch (the image entries' names)")
        ids = [str(name) for name in batch["image_id"]]
        if any(not name for name in ids):
            raise ValueError("frozen-feature cache needs a non-empty image_id per record (the entry's name)")
        names = [image_entry_name(name, image) for name, image in zip(ids, batch["image"])]
        records: list[list[torch.Tensor] | None] = [self.image_store.load(name) for name in names]
        missing = [row for row, record in enumerate(records) if record is None]
        if missing:
            computed = image_prefix_outputs(self.model, batch["image"][missing])
            for row, record in zip(missing, computed):
                self.image_store.save(names[row], record)
                records[row] = self.image_store.load(names[row])  # what later epochs read (storage dtype applied)
        self.hits["image"] += len(names) - len(missing)
        self.misses["image"] += len(missing)
        batch.pop("image")
        batch[FROZEN_IMAGE_KEY] = torch.stack([record[0] for record in records]).contiguous()
        for tap in range(self.plan.frozen_taps):
            batch[frozen_tap_key(tap)] = torch.stack([record[1 + tap] for record in records]).contiguous()

    def _text_lookup(self, name: str) -> torch.Tensor | None:
        if name in self._text_memory:
            self._text_memory.move_to_end(name)
            return self._text_memory[name]
        stored = self.text_store.load(name)
        return None if stored is None else stored[0]

    def _remember(self, name: str, hidden: torch.Tensor) -> None:
        self._text_memory[name] = hidden
        if len(self._text_memory) > TEXT_MEMORY_ENTRIES:
            self._text_memory.popitem(last=False)

    def _swap_text(self, batch: dict[str, Any]) -> None:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        types, positions = batch["token_type_ids"], batch["position_ids"]
        counts = valid_token_count(mask)
        names = [
            text_entry_name(ids[row, :count], types[row, :count], positions[row, :count])
            for row, count in enumerate(counts.tolist())
        ]
        hidden: list[torch.Tensor | None] = [self._text_lookup(name) for name in names]
        missing = [row for row, value in enumerate(hidden) if value is None]
        if missing:
            computed = text_prefix_outputs(self.model, ids[missing], mask[missing], types[missing], positions[missing])
            for row, value in zip(missing, computed):
                self.text_store.save(names[row], [value])
                hidden[row] = self.text_store.load(names[row])[0]  # what later epochs read (storage dtype applied)
        for name, value in zip(names, hidden):
            self._remember(name, value)
        self.hits["text"] += len(names) - len(missing)
        self.misses["text"] += len(missing)
        width = int(hidden[0].shape[-1])
        padded = torch.zeros(len(names), ids.shape[1], width, dtype=torch.float32)
        for row, value in enumerate(hidden):
            padded[row, : value.shape[0]] = value
        for key in ("input_ids", "token_type_ids", "position_ids"):
            batch.pop(key)
        batch[TEXT_HIDDEN_KEY] = padded


def _stack_images(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "image": torch.stack([torch.as_tensor(item["image"], dtype=torch.float32) for item in items]),
        "image_id": [str(item["image_id"]) for item in items],
    }


def warm_image_cache(model: nn.Module, dataset: Dataset, store: FrozenFeatureStore, batch_size: int = 8) -> int:
    """Compute and store the image prefix of every record of `dataset` not cached yet; returns how many were new.

    Every record's pixels are read (cheap next to the prefix's forward pass): the entry names hold their digest."""
    new = 0
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=_stack_images)
    for batch in loader:
        names = [image_entry_name(name, image) for name, image in zip(batch["image_id"], batch["image"])]
        missing = [row for row, name in enumerate(names) if not store.has(name)]
        if missing:
            for row, record in zip(missing, image_prefix_outputs(model, batch["image"][missing])):
                store.save(names[row], record)
        new += len(missing)
    return new
