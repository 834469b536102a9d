"""Method summaries: pooled AUC from summed site histograms (as the federated server pools), per-site AUCs, mean."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from bcvlm_client.reply_schema import encode_histogram
from bcvlm_model import TASKS
from bcvlm_model.metrics import ScoreHistogram
from bcvlm_server.round_metrics import evaluation_stage
from bcvlm_simulation.evaluation import SiteScores, summarise_histograms, summarise_method


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


def _two_sites(positives_at_b: int) -> dict[str, ScoreHistogram]:
    """Site a: 6 negatives low and 6 positives high; site b: 3 negatives mid and 3 positives at `positives_at_b`."""
    a_pos, a_neg, b_pos, b_neg = (np.zeros(20, np.int64) for _ in range(4))
    a_neg[2:8], a_pos[12:18], b_neg[9], b_pos[positives_at_b] = 1, 1, 3, 3
    return {"a": ScoreHistogram(a_pos, a_neg), "b": ScoreHistogram(b_pos, b_neg)}


def _server_and_simulation(sites: dict[str, ScoreHistogram], min_cases: int) -> tuple[dict, dict]:
    """The same site histograms pooled by the federated server (plain evaluate replies) and by the simulation."""
    replies = {
        site: {**{f"hist_{task}": encode_histogram(h) for task in TASKS}, **{f"cases_{task}": 12 for task in TASKS}}
        for site, h in sites.items()
    }
    stage = evaluation_stage(replies, loss=None, failures=0, n_bins=20, min_cases=min_cases, specificity=0.9)
    summary = summarise_histograms({site: dict.fromkeys(TASKS, h) for site, h in sites.items()}, 20, min_cases)
    return stage.pooled, summary


def test_the_server_and_the_simulation_pool_the_same_histograms_to_the_same_metrics() -> None:
    server, simulation = _server_and_simulation(_two_sites(positives_at_b=5), min_cases=3)
    for task in TASKS:
        assert server[task].auc is not None and 0.5 < server[task].auc < 1.0
        assert simulation["pooled_auc"][task] == server[task].auc
        assert simulation["cases"][task] == {"positive": server[task].n_positive, "negative": server[task].n_negative}


def test_the_server_and_the_simulation_withhold_on_the_same_count() -> None:
    sites = _two_sites(positives_at_b=5)  # 9 positives and 9 negatives pooled
    for min_cases, withheld in ((9, False), (10, True)):
        server, simulation = _server_and_simulation(sites, min_cases)
        assert (server["malignancy"].auc is None) is withheld
        assert (simulation["pooled_auc"]["malignancy"] is None) is withheld
