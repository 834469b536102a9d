"""What a site releases about its test patients: at most max_bins cells, none under k cases, counts kept."""

from __future__ import annotations

import numpy as np
import pytest

from bcvlm_client.evaluation_release import releasable_site_auc, release_histogram
from bcvlm_model.metrics import auc_from_histogram, exact_auc, score_histogram


def _cohort(cases: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.uniform(size=cases) < 0.3).astype(float)
    scores = np.clip(rng.normal(0.4 + 0.25 * labels, 0.15), 0, 1)
    return scores, labels


def _cells(histogram) -> np.ndarray:
    totals = histogram.positives + histogram.negatives
    return totals[totals > 0]


def test_a_fine_histogram_is_cut_to_the_bin_cap() -> None:
    scores, labels = _cohort(400)
    released = release_histogram(score_histogram(scores, labels, 100_000), max_bins=20, min_cell_count=1)
    assert released.n_bins == 100_000  # the server's grid, so sites still add up
    assert 0 < len(_cells(released)) <= 20


def test_no_released_cell_holds_fewer_than_k_cases() -> None:
    scores, labels = _cohort(80)
    exact = score_histogram(scores, labels, 1000)
    assert (_cells(exact) < 5).any()  # the unreleased histogram has small cells (most hold one image)
    assert (_cells(release_histogram(exact, max_bins=100, min_cell_count=5)) >= 5).all()


def test_release_keeps_every_case() -> None:
    scores, labels = _cohort(80)
    released = release_histogram(score_histogram(scores, labels, 1000), max_bins=100, min_cell_count=5)
    assert (released.n_positive, released.n_negative) == (int(labels.sum()), int((1 - labels).sum()))


def test_fewer_cases_than_k_release_nothing() -> None:
    scores, labels = _cohort(4)
    released = release_histogram(score_histogram(scores, labels, 1000), max_bins=100, min_cell_count=5)
    assert released.n_positive == released.n_negative == 0


def test_released_auc_stays_close_to_the_exact_auc() -> None:
    scores, labels = _cohort(300, seed=2)
    released = release_histogram(score_histogram(scores, labels, 1000), max_bins=100, min_cell_count=5)
    assert auc_from_histogram(released) == pytest.approx(exact_auc(scores, labels), abs=0.02)


def test_site_auc_is_released_only_above_the_minimum() -> None:
    scores, labels = _cohort(60)
    assert releasable_site_auc(scores, labels, min_cases=int(labels.sum()) + 1) is None
    assert releasable_site_auc(scores, labels, min_cases=5) == pytest.approx(exact_auc(scores, labels))


def test_merged_cells_stay_narrow() -> None:
    # six cases near 0.00 and six near 0.50, cells of >= 4: merging left to right would cut after the fourth low case
    # and carry the other two low cases up to 0.50; the narrowest cells keep each group where it is.
    scores = np.concatenate([np.arange(6) / 1000, 0.5 + np.arange(6) / 1000]) + 0.0001
    labels = np.tile([0.0, 1.0], 6)
    released = release_histogram(score_histogram(scores, labels, 1000), max_bins=1000, min_cell_count=4)
    low_cases = int(released.positives[:250].sum() + released.negatives[:250].sum())
    assert low_cases == 6


def test_cell_boundaries_do_not_depend_on_the_labels() -> None:
    scores, labels = _cohort(120, seed=3)
    flipped = 1 - labels
    released = release_histogram(score_histogram(scores, labels, 1000), max_bins=1000, min_cell_count=5)
    released_flipped = release_histogram(score_histogram(scores, flipped, 1000), max_bins=1000, min_cell_count=5)
    np.testing.assert_array_equal(
        released.positives + released.negatives, released_flipped.positives + released_flipped.negatives
    )
