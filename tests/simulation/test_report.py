"""The report builder: report.html and metrics.json exist, embed PNGs, and every number in the HTML equals metrics.json."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from bcvlm_model.atomic_io import read_json
from bcvlm_simulation.report import ReportError, build_report, format_number, lookup


def example_metrics(seed: int = 0) -> dict:
    """A metrics dict shaped like the simulation's, with AUCs computed from random scores (not hard-coded)."""
    rng = np.random.default_rng(seed)
    tasks, sites = ["malignancy", "calcification"], ["site_00", "site_01", "site_02"]
    y = rng.integers(0, 2, 200)

    def method(strength: float) -> dict:
        scores = {t: y * strength + rng.normal(size=200) for t in tasks}
        fpr_tpr = {t: roc_curve(y, scores[t])[:2] for t in tasks}
        site_auc = {s: {t: float(roc_auc_score(y[i::3], scores[t][i::3])) for t in tasks} for i, s in enumerate(sites)}
        return {
            "pooled_auc": {t: float(roc_auc_score(y, scores[t])) for t in tasks},
            "site_auc": site_auc,
            "mean_site_auc": {t: float(np.mean([site_auc[s][t] for s in sites])) for t in tasks},
            "roc": {t: {"fpr": fpr_tpr[t][0].tolist(), "tpr": fpr_tpr[t][1].tolist()} for t in tasks},
        }

    rounds = []
    for r in range(1, 4):
        rounds.append(
            {
                "round": r,
                "pooled_auc": {t: float(0.5 + 0.1 * r + rng.normal(0, 0.01)) for t in tasks},
                "site_auc": {s: {t: float(0.5 + 0.1 * r + rng.normal(0, 0.03)) for t in tasks} for s in sites},
                "epsilon": {s: float(r * (1.0 + rng.random())) for s in sites},
                "bytes_up": int(rng.integers(1e5, 1e6)),
                "bytes_down": int(rng.integers(1e5, 1e6)),
                "wall_time_s": float(rng.uniform(5, 9)),
            }
        )
    methods = {
        "federated": method(1.2),
        "centralized": method(1.3),
        "local_only": method(0.8),
        "image_only": method(0.9),
        "oracle": method(3.0),
    }
    methods["local_only"]["note"] = "each site alone"
    summary = [
        {"site": s, "patients": 10 + i, "images": 40 + 4 * i, "manufacturers": "A;B"} for i, s in enumerate(sites)
    ]
    return {
        "tasks": tasks,
        "sites": sites,
        "rounds": rounds,
        "methods": methods,
        "split_summary": summary,
        "run": {"wall_time_s": 12.5, "seed": 7},
        "notes": ["synthetic cohort"],
    }


def test_report_files_exist_and_numbers_agree(tmp_path: Path) -> None:
    metrics = example_metrics()
    report = build_report(metrics, tmp_path)
    assert report == tmp_path / "report.html"
    saved = read_json(tmp_path / "metrics.json")
    page = report.read_text()
    cells = re.findall(r'<td data-key="([^"]+)">([^<]*)</td>', page)
    assert len(cells) > 60
    for key, shown in cells:
        assert shown == format_number(lookup(saved, key)), key
    keys = {key for key, _ in cells}
    for method in metrics["methods"]:
        for task in metrics["tasks"]:
            assert f"methods.{method}.pooled_auc.{task}" in keys
            assert f"methods.{method}.mean_site_auc.{task}" in keys
    assert {f"rounds.{i}.epsilon.site_01" for i in range(3)} <= keys
    shown_fed = dict(cells)["methods.federated.pooled_auc.malignancy"]
    assert abs(float(shown_fed) - metrics["methods"]["federated"]["pooled_auc"]["malignancy"]) < 5e-5


def test_report_is_self_contained_with_png_plots(tmp_path: Path) -> None:
    page = build_report(example_metrics(1), tmp_path).read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 5
    for data in images:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in page and "https://" not in page


def test_report_rejects_incomplete_metrics(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="rounds"):
        build_report({"tasks": [], "sites": [], "methods": {}}, tmp_path)


def test_the_methods_table_shows_each_auc_with_its_interval(tmp_path: Path) -> None:
    metrics = example_metrics()
    metrics["methods"]["federated"]["mean_site_auc_ci"] = {"malignancy": [0.71, 0.83]}
    metrics["methods"]["centralized"]["mean_site_auc_minus_federated_ci"] = {"malignancy": [-0.04, 0.02]}
    page = build_report(metrics, tmp_path).read_text()
    assert '<span class="ci">[0.7100, 0.8300]</span>' in page
    assert (
        '<td data-ci="methods.centralized.mean_site_auc_minus_federated_ci.malignancy">[-0.0400, 0.0200]</td>' in page
    )


def test_the_breast_level_table_shows_breast_aucs_and_the_cases_without_laterality(tmp_path: Path) -> None:
    metrics = example_metrics()
    for seed, method in enumerate(metrics["methods"].values()):
        breast = example_metrics(seed + 1)["methods"]["federated"]
        method["breast"] = {**breast, "mean_site_auc_ci": {"malignancy": [0.6 + seed / 100, 0.9]}}
    metrics["breast_level"] = {"breasts": {"malignancy": 120, "calcification": 118}, "images_without_laterality": 7}
    page = build_report(metrics, tmp_path).read_text()
    section = page[page.index("<h2>Breast-level AUC</h2>") :]
    value = metrics["methods"]["centralized"]["breast"]["mean_site_auc"]["malignancy"]
    assert (
        f'<td data-key="methods.centralized.breast.mean_site_auc.malignancy">{format_number(value)} '
        '<span class="ci">[0.6100, 0.9000]</span></td>' in section
    )
    assert "without laterality, each counted as its own breast: 7" in section and "malignancy 120" in section


def test_the_site_field_ablation_shows_the_paired_difference_to_centralized(tmp_path: Path) -> None:
    metrics = example_metrics()
    assert "Site-field ablation" not in build_report(metrics, tmp_path).read_text()  # only when the run made it
    ablation = example_metrics(3)["methods"]["centralized"]
    ablation["pooled_auc_minus_centralized"] = {"malignancy": -0.061}
    ablation["pooled_auc_minus_centralized_ci"] = {"malignancy": [-0.09, -0.03]}
    metrics["methods"]["centralized_no_site_fields"] = ablation
    page = build_report(metrics, tmp_path).read_text()
    section = page[page.index("<h2>Site-field ablation</h2>") :]
    assert (
        '<td data-key="methods.centralized_no_site_fields.pooled_auc_minus_centralized.malignancy">-0.0610 '
        '<span class="ci">[-0.0900, -0.0300]</span></td>' in section
    )
    assert "centralized without site fields (ablation)" in page
