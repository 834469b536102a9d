"""MammographyDataset: manifest rows -> {image, metadata, labels, image_id}, from the cache or decoded on the fly."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from bcvlm_model import TASKS
from bcvlm_model.data.cache import cached_array_path, load_cached_array
from bcvlm_model.data.manifest import METADATA_TEXT_FIELDS, validate
from bcvlm_model.data.pipeline import load_preprocessed
from bcvlm_model.data.preprocess_config import PreprocessConfig


def _plain(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def row_metadata(row: pd.Series) -> dict[str, Any]:
    """The text-renderable fields of a manifest row (labels excluded), NaN -> None."""
    return {field: _plain(row[field]) for field in METADATA_TEXT_FIELDS}


class MammographyDataset(Dataset):
    """One item per manifest row: image FloatTensor[1, H, W] normalised, metadata dict, labels FloatTensor[2]."""

    def __init__(
        self,
        manifest: pd.DataFrame,
        preprocess_cfg: PreprocessConfig,
        cache_dir: str | os.PathLike[str] | None = None,
        decode_on_the_fly: bool = True,
    ) -> None:
        if cache_dir is None and not decode_on_the_fly:
            raise ValueError("MammographyDataset: no cache_dir and decode_on_the_fly=False: no image can be read")
        self.manifest = validate(manifest)
        self.cfg = preprocess_cfg
        self.cache_dir = cache_dir
        self.decode_on_the_fly = decode_on_the_fly

    def __len__(self) -> int:
        return len(self.manifest)

    def load_unit_image(self, index: int) -> np.ndarray:
        """The [0, 1] float32 image of row `index`: cached array when present, else decoded from DICOM (if allowed)."""
        row = self.manifest.iloc[index]
        if self.cache_dir is not None:
            path = cached_array_path(self.cache_dir, self.cfg, row["image_id"])
            if path.is_file():
                image = load_cached_array(path)
                expected = (self.cfg.image_height, self.cfg.image_width)
                if image.shape != expected:
                    raise ValueError(f"{path}: cached shape {image.shape} != configured {expected}")
                return image
            if not self.decode_on_the_fly:  # a site that did not allow it: never fall back to slow DICOM decoding
                raise FileNotFoundError(
                    f"{path}: image '{row['image_id']}' has no cached array for preprocessing "
                    f"{self.cfg.image_height}x{self.cfg.image_width} and decoding on the fly is "
                    "off (data.decode_on_the_fly); re-run bcvlm prepare with these settings"
                )
        return load_preprocessed(row["path"], self.cfg)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.manifest.iloc[index]
        unit = self.load_unit_image(index)
        image = (torch.from_numpy(unit) - self.cfg.intensity_mean) / self.cfg.intensity_std
        labels = torch.tensor([float(row[task]) for task in TASKS], dtype=torch.float32)
        return {
            "image": image.unsqueeze(0).float(),
            "metadata": row_metadata(row),
            "labels": labels,
            "image_id": str(row["image_id"]),
        }
