"""What a site releases about its test patients: score histograms capped in bins and with no cell under k cases.

The bounds are the site's own (`evaluation` in the site YAML) and hold whatever the server asks: the histogram keeps
the server's bin grid (so sites' histograms still add up), but its counts sit in at most `max_bins` coarse cells,
and adjacent cells are merged into the narrowest cells that each hold at least `min_cell_count` cases. A site with
fewer cases than that releases an empty histogram. A merged cell's counts sit at its case-weighted mean bin.
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


def _narrowest_cells(occupied: np.ndarray, totals: np.ndarray, min_cell_count: int) -> list[tuple[int, int]]:
    """Split the runs of occupied bins into cells of >= `min_cell_count` cases, minimising the sum over cells of
    (cases x bin span): the cases a cell moves, times how far. Returns (start, stop) index pairs into `occupied`.

    Depends on the bins' case counts only, never on the labels. Dynamic programming over the cell ends; a cell with
    at least 2k cases plus its largest bin can be split into two valid cells that cost no more, so the search for a
    cell's start stops there."""
    n = len(occupied)
    cumulative = np.concatenate([[0], np.cumsum(totals)])
    best = np.full(n + 1, np.inf)
    best[0] = 0.0
    cut = np.full(n + 1, -1, dtype=np.int64)
    for stop in range(1, n + 1):
        largest = 0
        for start in range(stop - 1, -1, -1):
            cases = cumulative[stop] - cumulative[start]
            largest = max(largest, int(totals[start]))
            if cases >= 2 * min_cell_count + largest:
                break
            if cases < min_cell_count or not np.isfinite(best[start]):
                continue
            cost = best[start] + cases * (occupied[stop - 1] - occupied[start])
            if cost < best[stop]:
                best[stop], cut[stop] = cost, start
    cells, stop = [], n
    while stop > 0:
        cells.append((int(cut[stop]), stop))
        stop = int(cut[stop])
    return cells[::-1]


def merge_small_cells(histogram: ScoreHistogram, min_cell_count: int) -> ScoreHistogram:
    """Merge runs of adjacent non-empty bins into cells of >= `min_cell_count` cases each, as narrow as possible, and
    put each cell's counts at its case-weighted mean bin; fewer cases than that in total releases nothing.

    Narrow cells move few cases far, which keeps the pooled AUC of several sites' released histograms within a few
    thousandths of the exact one (benchmarks/evaluation_release_gap.py)."""
    if min_cell_count < 1:
        raise ValueError(f"min_cell_count must be >= 1, got {min_cell_count}")
    totals = histogram.positives + histogram.negatives
    released = ScoreHistogram.empty(histogram.n_bins)
    if int(totals.sum()) < min_cell_count:
        return released
    occupied = np.flatnonzero(totals)
    counts = totals[occupied]
    for start, stop in _narrowest_cells(occupied, counts, min_cell_count):
        bins = occupied[start:stop]
        at = int(round(float((bins * counts[start:stop]).sum()) / float(counts[start:stop].sum())))
        released.positives[at] += int(histogram.positives[bins].sum())
        released.negatives[at] += int(histogram.negatives[bins].sum())
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
