"""What a site releases about its test patients: score histograms capped in bins and with no cell under k cases.

The bounds are the site's own (`evaluation` in the site YAML) and hold whatever the server asks: the histogram keeps
the server's bin grid (so sites' histograms still add up), but its counts sit in at most `max_bins` coarse cells,
and adjacent cells are merged until each holds at least `min_cell_count` cases. A site with fewer cases than that
releases an empty histogram. A merged cell's counts are placed at the bin of its median case.
"""

from __future__ import annotations

import math

import numpy as np

from bcvlm_model.metrics import ScoreHistogram, exact_auc


def coarsen(histogram: ScoreHistogram, max_bins: int) -> ScoreHistogram:
    """At most `max_bins` groups of adjacent bins, each group's counts at its middle bin (same grid length)."""
    n_bins = histogram.n_bins
    if max_bins < 1:
        raise ValueError(f"max_bins must be >= 1, got {max_bins}")
    if n_bins <= max_bins:
        return histogram
    width = math.ceil(n_bins / max_bins)
    positives, negatives = np.zeros(n_bins, np.int64), np.zeros(n_bins, np.int64)
    for start in range(0, n_bins, width):
        stop = min(start + width, n_bins)
        middle = start + (stop - start - 1) // 2
        positives[middle] = histogram.positives[start:stop].sum()
        negatives[middle] = histogram.negatives[start:stop].sum()
    return ScoreHistogram(positives, negatives)


def _median_bin(bins: list[int], counts: list[int]) -> int:
    half, running = sum(counts) / 2.0, 0
    for index, count in zip(bins, counts):
        running += count
        if running >= half:
            return index
    return bins[-1]


def merge_small_cells(histogram: ScoreHistogram, min_cell_count: int) -> ScoreHistogram:
    """Merge runs of adjacent non-empty bins until every released cell holds >= `min_cell_count` cases; a remainder
    joins the last cell; fewer cases than that in total releases nothing (all zeros)."""
    if min_cell_count < 1:
        raise ValueError(f"min_cell_count must be >= 1, got {min_cell_count}")
    totals = histogram.positives + histogram.negatives
    cells: list[tuple[list[int], list[int], int, int]] = []  # (bins, case counts, positives, negatives)
    run_bins: list[int] = []
    run_counts: list[int] = []
    run_pos = run_neg = 0
    for index in np.flatnonzero(totals):
        run_bins.append(int(index))
        run_counts.append(int(totals[index]))
        run_pos += int(histogram.positives[index])
        run_neg += int(histogram.negatives[index])
        if run_pos + run_neg >= min_cell_count:
            cells.append((run_bins, run_counts, run_pos, run_neg))
            run_bins, run_counts, run_pos, run_neg = [], [], 0, 0
    released = ScoreHistogram.empty(histogram.n_bins)
    if not cells:
        return released
    if run_bins:  # the top cells' remainder: too few cases for a cell of its own
        bins, counts, pos, neg = cells.pop()
        cells.append((bins + run_bins, counts + run_counts, pos + run_pos, neg + run_neg))
    for bins, counts, pos, neg in cells:
        at = _median_bin(bins, counts)
        released.positives[at] += pos
        released.negatives[at] += neg
    return released


def release_histogram(histogram: ScoreHistogram, max_bins: int, min_cell_count: int) -> ScoreHistogram:
    """The histogram a site may send: coarsened to `max_bins`, then no cell under `min_cell_count` cases."""
    return merge_small_cells(coarsen(histogram, max_bins), min_cell_count)


def releasable_site_auc(scores: np.ndarray, labels: np.ndarray, min_cases: int) -> float | None:
    """The site's own exact AUC, or None unless it has at least `min_cases` positive and negative cases."""
    labels = np.asarray(labels)
    positives = int((labels == 1).sum())
    negatives = int((labels == 0).sum())
    if min_cases < 1 or positives < min_cases or negatives < min_cases:
        return None
    return float(exact_auc(np.asarray(scores), labels))
