"""Method summaries: pooled AUC from summed site histograms, per-site AUCs and their mean."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from bcvlm_simulation.evaluation import SiteScores, summarise_method


def _site(scores: np.ndarray, labels: np.ndarray) -> SiteScores:
    return SiteScores(
        scores={"malignancy": scores, "calcification": scores}, labels={"malignancy": labels, "calcification": labels}
    )


def test_pooled_site_and_mean_site_auc() -> None:
    rng = np.random.default_rng(0)
    labels = [rng.integers(0, 2, 80).astype(float) for _ in range(2)]
    # Site b's scores sit 0.4 higher: each site ranks well within itself, the pooled ranking mixes the two scales.
    scores = [
        np.clip(0.25 + 0.3 * labels[0] + rng.normal(0, 0.1, 80), 0, 1),
        np.clip(0.65 + 0.3 * labels[1] + rng.normal(0, 0.1, 80), 0, 1),
    ]
    summary = summarise_method({"a": _site(scores[0], labels[0]), "b": _site(scores[1], labels[1])}, n_bins=2000)
    site_a = roc_auc_score(labels[0], scores[0])
    site_b = roc_auc_score(labels[1], scores[1])
    assert summary["site_auc"]["a"]["malignancy"] == pytest.approx(site_a, abs=2e-3)
    assert summary["site_auc"]["b"]["malignancy"] == pytest.approx(site_b, abs=2e-3)
    assert summary["mean_site_auc"]["malignancy"] == pytest.approx((site_a + site_b) / 2, abs=2e-3)
    pooled = roc_auc_score(np.concatenate(labels), np.concatenate(scores))
    assert summary["pooled_auc"]["malignancy"] == pytest.approx(pooled, abs=2e-3)
    assert summary["pooled_auc"]["malignancy"] < summary["mean_site_auc"]["malignancy"] - 0.05


def test_mean_site_auc_skips_sites_without_both_classes() -> None:
    one_class = _site(np.array([0.2, 0.7, 0.4]), np.zeros(3))
    ranked = _site(np.array([0.1, 0.9, 0.3, 0.8]), np.array([0.0, 1.0, 0.0, 1.0]))
    summary = summarise_method({"empty": one_class, "ranked": ranked}, n_bins=100)
    assert summary["site_auc"]["empty"]["malignancy"] is None
    assert summary["mean_site_auc"]["malignancy"] == pytest.approx(1.0)
    none_scored = summarise_method({"empty": one_class}, n_bins=100)
    assert none_scored["mean_site_auc"]["malignancy"] is None
