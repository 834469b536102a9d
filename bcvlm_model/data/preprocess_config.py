"""PreprocessConfig: every setting that turns a DICOM into the model's input array; stored in each checkpoint."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum

from bcvlm_model.config_io import ConfigError, to_enum


class VoiWindowChoice(StrEnum):
    """Values of `preprocess.voi_window_choice`: which of several VOI windows is used, deterministically."""

    first = "first"
    widest = "widest"
    narrowest = "narrowest"


class ForProcessingPolicy(StrEnum):
    """Values of `preprocess.for_processing_policy`: what happens to a For-Processing (raw detector) image."""

    reject = "reject"
    """The image is rejected."""
    percentile_window = "percentile_window"
    """Windowed between the no-VOI percentiles (log-transformed first) and marked as processed in the pipeline."""


@dataclass
class PreprocessConfig:
    """Settings of `bcvlm_model.data.pipeline.load_preprocessed` and of the dataset's intensity normalisation."""

    image_height: int = 2048
    image_width: int = 1024
    # VOI: which window (of several) to use (see VoiWindowChoice).
    voi_window_choice: VoiWindowChoice = VoiWindowChoice.first
    # Prefer a VOI LUT Sequence over window centre/width when both are present.
    prefer_voi_lut_sequence: bool = True
    # Images without any VOI: scale between these percentiles of the modality-LUT output.
    no_voi_low_percentile: float = 0.0
    no_voi_high_percentile: float = 100.0
    # For-Processing images (see ForProcessingPolicy); never silently mixed with For-Presentation ones.
    for_processing_policy: ForProcessingPolicy = ForProcessingPolicy.reject
    # Orientation: the chest wall ends up on the LEFT of the array.
    orientation_from_tags: bool = True
    # Breast crop: foreground = pixels above this fraction of [0, 1] after VOI on a downsampled copy.
    crop: bool = True
    crop_threshold: float = 0.08
    crop_margin_fraction: float = 0.02
    crop_analysis_height: int = 256
    # JPEG 2000: decode at the deepest resolution level that still covers image_height x image_width (OpenJPEG
    # `reduce`, several times faster) instead of decoding in full and resizing; false = full decode everywhere.
    jpeg2000_reduced_decode: bool = True
    # Resize: aspect preserving, then pad (right / bottom) with `pad_value`.
    resize_antialias: bool = True
    pad_value: float = 0.0
    # Normalisation applied by MammographyDataset: (x - mean) / std on the [0, 1] array.
    intensity_mean: float = 0.5
    intensity_std: float = 0.25

    def __post_init__(self) -> None:
        self.voi_window_choice = to_enum(VoiWindowChoice, self.voi_window_choice, "preprocess.voi_window_choice")
        self.for_processing_policy = to_enum(
            ForProcessingPolicy, self.for_processing_policy, "preprocess.for_processing_policy"
        )
        if self.image_height < 8 or self.image_width < 8:
            raise ConfigError(
                f"key 'preprocess.image_height/image_width': {self.image_height}x{self.image_width} is too small"
            )
        if not 0.0 <= self.no_voi_low_percentile < self.no_voi_high_percentile <= 100.0:
            raise ConfigError(
                "key 'preprocess.no_voi_low_percentile': need 0 <= no_voi_low_percentile < no_voi_high_percentile <= 100"
            )
        if self.intensity_std <= 0:
            raise ConfigError(f"key 'preprocess.intensity_std': must be > 0, got {self.intensity_std}")


_ARRAY_FIELDS_EXCLUDED = ("intensity_mean", "intensity_std")


def preprocess_config_hash(cfg: PreprocessConfig) -> str:
    """Short stable hash of the settings that change cached arrays (dataset-side normalisation excluded)."""
    from dataclasses import asdict

    payload = {k: v for k, v in asdict(cfg).items() if k not in _ARRAY_FIELDS_EXCLUDED}
    payload["pipeline_version"] = PIPELINE_VERSION
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


PIPELINE_VERSION = 1
"""Bump when the pipeline code changes what it outputs, so stale caches are never reused."""


def parse_size(text: str) -> tuple[int, int]:
    """Parse 'HxW' (e.g. '512x256') into (height, width)."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"size '{text}' is not of the form HxW, e.g. 512x256")
    return int(parts[0]), int(parts[1])
