"""Site-field ablation: its text config drops the site fields, and its difference to centralized is paired."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bcvlm_model import TASKS
from bcvlm_model.text import TextConfig, render_report
from bcvlm_simulation.bootstrap import method_intervals
from bcvlm_simulation.evaluation import SiteScores, summarise_method
from bcvlm_simulation.site_field_ablation import METHOD, REFERENCE, ablation_differences, ablation_text


def test_the_ablation_reads_reports_without_site_fields_and_refuses_a_run_without_them() -> None:
    case = {"age": 50.0, "view": "CC", "laterality": "L", "manufacturer": "Vendorex", "machine_id": "unit-7"}
    text = render_report(case, ablation_text(TextConfig()))
    assert "Vendorex" not in text and "unit-7" not in text and "age 50" in text
    with pytest.raises(ValueError, match="drop_site_fields=true already"):
        ablation_text(TextConfig(drop_site_fields=True))


def _site(seed: int, patients: int = 30) -> tuple[pd.DataFrame, dict[str, SiteScores]]:
    rng = np.random.default_rng(seed)
    labels = np.repeat((rng.uniform(size=patients) < 0.4).astype(float), 2)
    table = pd.DataFrame({"patient_id": np.repeat([f"P{seed}-{k}" for k in range(patients)], 2)})
    table = table.assign(**{task: labels for task in TASKS})
    out = {}
    for k, name in enumerate((REFERENCE, METHOD, "federated")):
        scores = labels * (1.0 - 0.3 * k) + rng.normal(0.0, 0.8, size=labels.shape)
        out[name] = SiteScores(scores=dict.fromkeys(TASKS, scores), labels=dict.fromkeys(TASKS, labels))
    return table, out


def test_the_difference_to_centralized_is_paired_on_the_shared_resamples() -> None:
    tests, scores_of = {}, {REFERENCE: {}, METHOD: {}, "federated": {}}
    for seed, site in enumerate(("s1", "s2")):
        tests[site], per_method = _site(seed)
        for name, entry in per_method.items():
            scores_of[name][site] = entry
    summaries = {name: summarise_method(per_site) for name, per_site in scores_of.items()}
    out = ablation_differences(scores_of, summaries, tests, resamples=200, seed=5)
    every = method_intervals(scores_of, tests, resamples=200, seed=5, reference=REFERENCE)[METHOD]
    for key in ("pooled_auc_minus_centralized_ci", "mean_site_auc_minus_centralized_ci"):
        assert out[key] == every[key] and out[key]["malignancy"] is not None
    expected = summaries[METHOD]["mean_site_auc"]["malignancy"] - summaries[REFERENCE]["mean_site_auc"]["malignancy"]
    assert out["mean_site_auc_minus_centralized"]["malignancy"] == pytest.approx(expected)
    assert ablation_differences({REFERENCE: scores_of[REFERENCE]}, summaries, tests, resamples=20, seed=5) == {}
