"""Breast region crop: bright tissue regions (not labels, specks or film-edge strips) on a downsampled copy -> a box."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def downsample_for_analysis(unit: np.ndarray, target_height: int) -> tuple[np.ndarray, int]:
    """Block-mean downsample by an integer factor so the height is about `target_height`; returns (small, factor)."""
    factor = max(1, unit.shape[0] // max(1, target_height))
    if factor == 1:
        return unit.astype(np.float32, copy=False), 1
    h, w = (unit.shape[0] // factor) * factor, (unit.shape[1] // factor) * factor
    small = unit[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3), dtype=np.float64)
    return small.astype(np.float32), factor


def analysis_border(shape: tuple[int, ...]) -> int:
    """Width in pixels of the ignored frame along the border of the downsampled image."""
    return max(1, int(round(0.03 * min(shape[0], shape[1]))))


def tissue_mask(
    small: np.ndarray,
    threshold: float,
    opening: bool = True,
    min_component_fraction: float = 0.005,
    thin_fraction: float = 0.03,
) -> np.ndarray:
    """The breast and body: the largest bright region plus bright regions touching the chest wall (left) edge.

    A frame of about 3 % along the border is ignored so that bright film edges cannot join regions together.

    Regions that touch the chest wall must cover `min_component_fraction` of the image and not be thin strips
    (digitised-film edges). Burnt-in labels and specks away from the chest wall are left out.
    """
    mask = small > threshold
    border = analysis_border(small.shape)  # digitised-film edges run along the image border
    mask[:border], mask[-border:], mask[:, :border], mask[:, -border:] = False, False, False, False
    if opening:
        mask = ndimage.binary_opening(mask, iterations=1)
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
    keep = [int(np.argmax(sizes)) + 1]
    for index, region in enumerate(ndimage.find_objects(labels), start=1):
        thin = min(region[0].stop - region[0].start, region[1].stop - region[1].start) < thin_fraction * min(
            small.shape
        )
        if region[1].start <= border and sizes[index - 1] >= min_component_fraction * small.size and not thin:
            keep.append(index)
    return np.isin(labels, keep)


def breast_bounding_box(
    unit: np.ndarray, threshold: float = 0.08, margin_fraction: float = 0.02, analysis_height: int = 256
) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) around the tissue regions (see tissue_mask), plus a margin.

    Returns the full image when nothing is above the threshold.
    """
    small, factor = downsample_for_analysis(unit, analysis_height)
    mask = tissue_mask(small, threshold)
    height, width = unit.shape
    if not mask.any():
        return 0, height, 0, width
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    margin_r = int(round(margin_fraction * height))
    margin_c = int(round(margin_fraction * width))
    top = max(0, rows[0] * factor - margin_r)
    bottom = min(height, (rows[-1] + 1) * factor + margin_r)
    left = max(0, cols[0] * factor - margin_c)
    right = min(width, (cols[-1] + 1) * factor + margin_c)
    border = analysis_border(small.shape) + 1  # tissue reaching the ignored frame reaches the image edge
    if rows[0] <= border:
        top = 0
    if cols[0] <= border:
        left = 0
    if rows[-1] + 1 >= small.shape[0] - border:
        bottom = height
    if cols[-1] + 1 >= small.shape[1] - border:
        right = width
    return int(top), int(bottom), int(left), int(right)


def crop_to_box(unit: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Slice the image to (top, bottom, left, right)."""
    top, bottom, left, right = box
    if not (0 <= top < bottom <= unit.shape[0] and 0 <= left < right <= unit.shape[1]):
        raise ValueError(f"crop box {box} does not fit image of shape {unit.shape}")
    return unit[top:bottom, left:right]


def tissue_kept_fraction(
    unit: np.ndarray,
    box: tuple[int, int, int, int],
    threshold: float = 0.08,
    analysis_height: int = 256,
) -> float:
    """Share of the tissue (tissue_mask without the opening that the box search uses) inside `box`: crop QA."""
    small, factor = downsample_for_analysis(unit, analysis_height)
    tissue = tissue_mask(small, threshold, opening=False)
    total = int(tissue.sum())
    if total == 0:
        return 1.0
    top, bottom, left, right = (v // factor for v in box)
    return int(tissue[top : max(top + 1, bottom), left : max(left + 1, right)].sum()) / total
