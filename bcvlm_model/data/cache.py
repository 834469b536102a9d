"""Preprocessed-array cache: one uint16 .npy per image under cache/<config hash>/, written atomically."""

from __future__ import annotations

import hashlib
import io
import os
import re
from pathlib import Path

import numpy as np

from bcvlm_model.atomic_io import atomic_write_bytes, atomic_write_json, read_json
from bcvlm_model.config_io import config_to_dict
from bcvlm_model.data.preprocess_config import PreprocessConfig, preprocess_config_hash

UINT16_SCALE = 65535.0
CONFIG_RECORD_NAME = "preprocess_config.json"
"""In every cache folder: the preprocessing its arrays were made with (what `bcvlm-client --check` reports)."""
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_file_stem(image_id: str) -> str:
    """File-system-safe name for an image id (unsafe ids get a short hash suffix so names never collide)."""
    cleaned = _SAFE.sub("_", image_id)
    if cleaned == image_id and not image_id.startswith("."):
        return image_id
    return f"{cleaned.lstrip('.')}-{hashlib.sha1(image_id.encode()).hexdigest()[:8]}"


def cache_folder(cache_dir: str | os.PathLike[str], cfg: PreprocessConfig) -> Path:
    """The folder holding arrays made with `cfg`: <cache_dir>/<config hash>."""
    return Path(cache_dir) / preprocess_config_hash(cfg)


def record_cache_config(cache_dir: str | os.PathLike[str], cfg: PreprocessConfig) -> Path:
    """Create `cfg`'s cache folder and write its config record (unchanged records are not rewritten)."""
    folder = cache_folder(cache_dir, cfg)
    folder.mkdir(parents=True, exist_ok=True)
    record = folder / CONFIG_RECORD_NAME
    payload = {"config_hash": preprocess_config_hash(cfg), "preprocess": config_to_dict(cfg)}
    if not record.is_file() or read_json(record) != payload:
        atomic_write_json(record, payload)
    return folder


def cached_array_path(cache_dir: str | os.PathLike[str], cfg: PreprocessConfig, image_id: str) -> Path:
    """Where the array of `image_id` made with `cfg` lives."""
    return cache_folder(cache_dir, cfg) / f"{safe_file_stem(image_id)}.npy"


def unit_to_uint16(image: np.ndarray) -> np.ndarray:
    """[0, 1] float -> uint16 (rounded), the cache's storage type."""
    return np.round(np.clip(image, 0.0, 1.0) * UINT16_SCALE).astype(np.uint16)


def save_cached_array(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Write a [0, 1] image as a uint16 .npy atomically (a reader never sees a partial file)."""
    buffer = io.BytesIO()
    np.save(buffer, unit_to_uint16(image), allow_pickle=False)
    return atomic_write_bytes(path, buffer.getvalue())


def load_cached_array(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a cached uint16 .npy back to float32 in [0, 1]."""
    stored = np.load(path, allow_pickle=False)
    if stored.dtype != np.uint16 or stored.ndim != 2:
        raise ValueError(f"{path}: cached array has dtype {stored.dtype} and shape {stored.shape}, expected uint16 2-D")
    return stored.astype(np.float32) / np.float32(UINT16_SCALE)
