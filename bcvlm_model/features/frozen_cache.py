"""Frozen-feature store: per-record outputs of the model's frozen prefix on the site's disk, keyed by what made them.

A store folder is named by a hash of everything that determines its entries: the frozen weights (every parameter
and buffer of the frozen prefix, bytes included), where the prefix ends, the preprocessing (image) or nothing more
(text: the token ids are part of each entry's name, so tokenizer and template changes give new entries), the storage
dtype and the cache format version. A change of any of them opens a different folder, so a stale entry is never read.
Entries are `.npz` files written atomically (`atomic_io`): a killed process leaves the old entry or none.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from bcvlm_model.atomic_io import atomic_write_bytes, atomic_write_json, read_json
from bcvlm_model.config_io import to_enum
from bcvlm_model.data.cache import safe_file_stem
from bcvlm_model.features.storage_dtype import FeatureDtype

CACHE_FORMAT_VERSION = 2
"""Bump when the stored layout or the way prefixes are computed changes (2: image entries named by id and pixel digest)."""

STORAGE_DTYPES: dict[FeatureDtype, np.dtype] = {
    FeatureDtype.float32: np.dtype(np.float32),
    FeatureDtype.float16: np.dtype(np.float16),
}
"""numpy dtype of each storage choice (features are computed in float32 and cast when stored)."""

LOGGER = logging.getLogger("bcvlm_model.features")

KEY_RECORD_NAME = "cache_key.json"
"""In every store folder: the key payload its entries were made under (for people and `--check` tools)."""


def weights_fingerprint(modules: Iterable[nn.Module]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of every parameter and buffer of `modules` (in order)."""
    digest = hashlib.sha256()
    for index, module in enumerate(modules):
        tensors = [*module.named_parameters(), *module.named_buffers()]
        for name, tensor in tensors:
            data = tensor.detach().to("cpu").contiguous()
            digest.update(f"{index}.{name}|{data.dtype}|{tuple(data.shape)}|".encode())
            digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def cache_key(payload: dict[str, Any]) -> str:
    """Short stable hash of a JSON-serialisable key payload."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


@dataclass
class FrozenFeatureStore:
    """One folder of cached frozen-prefix outputs: `load(name)` / `save(name, tensors)` per record."""

    folder: Path
    storage_dtype: FeatureDtype
    key_payload: dict[str, Any]

    @classmethod
    def open(
        cls,
        root: str | os.PathLike[str],
        kind: str,
        key_payload: dict[str, Any],
        storage_dtype: FeatureDtype | str = FeatureDtype.float16,
    ) -> "FrozenFeatureStore":
        """The store for `key_payload` under `<root>/<kind>-<key hash>/` (created, with its key record)."""
        storage_dtype = to_enum(FeatureDtype, storage_dtype, "compute.frozen_feature_dtype")
        if not kind.isidentifier():
            raise ValueError(f"frozen-feature store kind {kind!r} must be a plain identifier")
        payload = {**key_payload, "storage_dtype": storage_dtype, "format_version": CACHE_FORMAT_VERSION, "kind": kind}
        folder = Path(root) / f"{kind}-{cache_key(payload)}"
        folder.mkdir(parents=True, exist_ok=True)
        record = folder / KEY_RECORD_NAME
        if not record.is_file() or read_json(record) != json.loads(json.dumps(payload, sort_keys=True, default=str)):
            atomic_write_json(record, payload)
        return cls(folder=folder, storage_dtype=storage_dtype, key_payload=payload)

    def entry_path(self, name: str) -> Path:
        return self.folder / f"{safe_file_stem(name)}.npz"

    def has(self, name: str) -> bool:
        return self.entry_path(name).is_file()

    def save(self, name: str, tensors: list[torch.Tensor]) -> Path:
        """Store one record's tensors (no batch dim) atomically in the storage dtype."""
        dtype = STORAGE_DTYPES[self.storage_dtype]
        arrays = {
            f"t{index}": tensor.detach().to("cpu", torch.float32).numpy().astype(dtype)
            for index, tensor in enumerate(tensors)
        }
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return atomic_write_bytes(self.entry_path(name), buffer.getvalue())

    def load(self, name: str) -> list[torch.Tensor] | None:
        """One record's tensors as float32 (None when the record is not cached)."""
        path = self.entry_path(name)
        try:
            with np.load(path, allow_pickle=False) as stored:
                count = len(stored.files)
                return [torch.from_numpy(stored[f"t{index}"].astype(np.float32)) for index in range(count)]
        except FileNotFoundError:
            return None
        except (zipfile.BadZipFile, ValueError, KeyError, OSError) as exc:  # damaged on disk: recompute, never trust
            LOGGER.warning("frozen-feature entry %s is unreadable (%s); it will be recomputed", path, exc)
            return None

    def entry_count(self) -> int:
        return sum(1 for _ in self.folder.glob("*.npz"))
