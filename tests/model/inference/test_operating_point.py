"""Tests of the validation-set operating point (threshold at a target specificity) and its storage in `extra`."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bcvlm_model.inference.operating_point import (
    OPERATING_POINTS_KEY,
    choose_threshold,
    operating_points_from_validation,
    read_thresholds,
    store_operating_points,
    threshold_from_histogram,
)
from bcvlm_model.metrics import ScoreHistogram, score_histogram


def test_threshold_reaches_target_specificity_with_maximal_sensitivity() -> None:
    rng = np.random.default_rng(0)
    negatives = rng.beta(2, 5, size=500)
    positives = rng.beta(5, 2, size=100)
    scores = np.concatenate([negatives, positives])
    labels = np.concatenate([np.zeros(500), np.ones(100)])
    point = choose_threshold(scores, labels, target_specificity=0.9)
    assert point.validation_specificity >= 0.9
    assert point.validation_specificity == pytest.approx(np.mean(negatives < point.threshold))
    assert point.validation_sensitivity == pytest.approx(np.mean(positives >= point.threshold))
    # Any lower observed score would drop specificity below the target: the threshold is the most sensitive one.
    lower = scores[scores < point.threshold]
    assert np.mean(negatives < lower.max()) < 0.9
    assert (point.n_negatives, point.n_positives) == (500, 100)


def test_ties_and_unlabelled_cases() -> None:
    scores = [0.1, 0.1, 0.1, 0.1, 0.9, 0.5, 0.7]
    labels = [0, 0, 0, 0, 0, 1, float("nan")]
    point = choose_threshold(scores, labels, target_specificity=0.8)
    assert point.threshold == pytest.approx(0.5)
    assert point.validation_specificity == pytest.approx(0.8)
    assert point.validation_sensitivity == pytest.approx(1.0)
    assert point.n_positives == 1  # the NaN-labelled 0.7 is ignored


def test_full_specificity_calls_nothing_negative_positive() -> None:
    point = choose_threshold([0.2, 0.95, 0.4], [0, 0, 1], target_specificity=1.0)
    assert point.threshold > 0.95 and math.isfinite(point.threshold)
    assert point.validation_specificity == 1.0


@pytest.mark.parametrize(
    ("scores", "labels", "target", "message"),
    [
        ([0.1, 2.0], [0, 1], 0.9, "probabilities"),
        ([0.1, 0.2], [1, 1], 0.9, "no labelled negative"),
        ([0.1, 0.2], [0, 1], 1.5, "target specificity"),
        ([0.1], [0, 1], 0.9, "differ in length"),
        ([0.1, 0.2], [0, 3], 0.9, "0, 1 or NaN"),
    ],
)
def test_bad_input_is_named(scores, labels, target, message) -> None:
    with pytest.raises(ValueError, match=message):
        choose_threshold(scores, labels, target)


def test_store_and_read_back_per_task() -> None:
    scores = np.array([[0.1, 0.3], [0.2, 0.6], [0.8, 0.2], [0.9, 0.9]])
    labels = np.array([[0, np.nan], [0, np.nan], [1, np.nan], [1, np.nan]])
    extra = store_operating_points({"round": 3}, scores, labels, target_specificity=0.5)
    assert extra["round"] == 3
    assert set(extra[OPERATING_POINTS_KEY]) == {"malignancy"}  # calcification has no labelled negative
    thresholds = read_thresholds(extra)
    assert thresholds["calcification"] is None
    assert thresholds["malignancy"] == pytest.approx(0.2)
    assert read_thresholds({}) == {"malignancy": None, "calcification": None}
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        operating_points_from_validation(scores[:, 0], labels[:, 0])


def test_a_histogram_threshold_reaches_the_target_on_the_binned_scores() -> None:
    rng = np.random.default_rng(7)
    labels = (rng.uniform(size=500) < 0.3).astype(float)
    scores = np.clip(rng.normal(0.3 + 0.3 * labels, 0.15), 0, 1)
    point = threshold_from_histogram(score_histogram(scores, labels, 100), target_specificity=0.85)
    negatives, positives = scores[labels == 0], scores[labels == 1]
    assert np.mean(negatives < point.threshold) >= 0.85  # the histogram edge holds for the raw scores too
    assert point.validation_specificity == pytest.approx(np.mean(negatives < point.threshold))
    assert point.validation_sensitivity == pytest.approx(np.mean(positives >= point.threshold))
    assert point.threshold < choose_threshold(scores, labels, 0.85).threshold + 0.02  # no coarser than one bin


def test_a_histogram_threshold_sits_in_the_middle_of_the_empty_gap() -> None:
    histogram = ScoreHistogram(np.array([0, 0, 0, 0, 0, 0, 0, 0, 2, 0]), np.array([0, 3, 0, 0, 0, 0, 0, 0, 0, 0]))
    point = threshold_from_histogram(histogram, target_specificity=1.0)
    assert point.threshold == pytest.approx((2 + 8) / 20)  # between bin 1 (negatives) and bin 8 (positives)
    assert point.validation_specificity == 1.0 and point.validation_sensitivity == 1.0


def test_a_histogram_without_negatives_has_no_threshold() -> None:
    with pytest.raises(ValueError, match="no negative"):
        threshold_from_histogram(ScoreHistogram(np.array([1, 2]), np.array([0, 0])))
