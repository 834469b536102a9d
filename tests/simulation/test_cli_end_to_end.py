"""`bcvlm simulate --config-name tiny`: 2 synthetic virtual sites, 1 round with DP and SecAgg+ on Flower's
simulation engine (the real ServerApp/ClientApp), the baselines and the report — end to end in a subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bcvlm_client.flower_process import FLOWER_ENV_DEFAULTS
from bcvlm_client.round_record import HistogramCounts
from bcvlm_model.atomic_io import read_json
from bcvlm_model.checkpoint import load_checkpoint
from bcvlm_model.inference.operating_point import OPERATING_POINTS_KEY
from bcvlm_server.run_records import RunRecords
from bcvlm_simulation.report import METHOD_ORDER, format_number, lookup
from bcvlm_simulation.round_metrics import final_checkpoint_dir

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


def binning_tolerance(histogram: HistogramCounts) -> float:
    """The most an AUC read from these bins can differ from the exact AUC of the same scores: a positive and a
    negative in the same bin count as half an ordered pair, whatever their exact scores (each such pair moves the AUC
    by up to 0.5 / (positives x negatives); with 4 positives and 24 negatives one pair is 0.0052)."""
    positives, negatives = np.asarray(histogram.positives), np.asarray(histogram.negatives)
    return 0.5 * float(positives @ negatives) / float(positives.sum() * negatives.sum())


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("sim") / "run"
    env = {**os.environ, **FLOWER_ENV_DEFAULTS, "RAY_DEDUP_LOGS": "0"}
    command = [
        sys.executable,
        "-c",
        "from bcvlm_model.cli import main; raise SystemExit(main())",
        "simulate",
        "--config-name",
        "tiny",
        f"run_dir={run_dir}",
        "progress=false",
        # release the exact 1000-bin histograms, so the secure sum can be compared with the exact AUC
        "site.evaluation.max_bins=1000",
        "site.evaluation.min_cell_count=1",
        # 200 resamples (default 1000) still give every CI the report shows; 6 methods x 1000 cost about a minute
        "bootstrap_resamples=200",
    ]
    log_path = run_dir.parent / "simulate.log"
    with log_path.open("w") as log_file:
        done = subprocess.run(
            command, env=env, stdout=log_file, stderr=subprocess.STDOUT, text=True, timeout=1400, cwd=run_dir.parent
        )
    log = log_path.read_text()
    assert done.returncode == 0, log[-4000:]
    assert f"Report: {run_dir / 'report.html'}" in log
    assert "site=" in log and "round=1" in log, "per-site progress lines missing"
    return run_dir


def test_tiny_simulation_writes_sites_rounds_and_baselines(tiny_run: Path) -> None:
    summary = pd.read_csv(tiny_run / "split_summary.csv")
    assert len(summary) == 2
    assignment = pd.read_csv(tiny_run / "site_assignment.csv")
    assert assignment.groupby("patient_id")["sim_site"].nunique().max() == 1
    for index in range(2):
        assert (tiny_run / "sites" / f"site_{index}.yaml").is_file()
    node_map = [read_json(p) for p in (tiny_run / "node_map").glob("*.json")]
    assert sorted(entry["site"] for entry in node_map) == sorted(summary["site"])

    metrics = read_json(tiny_run / "metrics.json")
    assert [r["round"] for r in metrics["rounds"]] == [1]
    last = metrics["rounds"][0]
    assert set(last["epsilon"]) == set(summary["site"]), "epsilon must be reported for every virtual site"
    assert all(value is not None and value > 0 for value in last["epsilon"].values())
    assert last["bytes_up"] > 0 and last["bytes_down"] > 0 and last["wall_time_s"] > 0
    assert set(metrics["methods"]) == set(METHOD_ORDER)  # every method the report knows was run
    # Public pretraining: the federated run started from the public VLM checkpoint (trainable weights only).
    public_vlm = tiny_run / "pretrain" / "vlm"
    assert (public_vlm / "model.safetensors").is_file() and (tiny_run / "pretrain" / "image_only").is_dir()
    assert f"init_checkpoint: {public_vlm}" in (tiny_run / "server.yaml").read_text()
    for method in metrics["methods"].values():
        auc = method["pooled_auc"]["malignancy"]
        assert auc is None or 0.0 <= auc <= 1.0
    # The final re-scoring of the last global checkpoint matches the sites' own federated evaluation, up to the bins.
    record = RunRecords(tiny_run / "federated").load_metrics(1)
    for task in ("malignancy", "calcification"):
        server, rescored = last["pooled_auc"][task], metrics["methods"]["federated"]["pooled_auc"][task]
        if server is not None and rescored is not None:
            tolerance = binning_tolerance(record.evaluate.pooled[task].histogram)
            assert abs(server - rescored) <= tolerance + 1e-9, (task, server, rescored, tolerance)
    effective = (tiny_run / "effective_config.yaml").read_text()
    assert "rounds: 1" in effective and "natural_key: site_id" in effective


def test_tiny_simulation_report_agrees_with_metrics(tiny_run: Path) -> None:
    metrics = read_json(tiny_run / "metrics.json")
    page = (tiny_run / "report.html").read_text()
    cells = re.findall(r'<td data-key="([^"]+)">([^<]*)</td>', page)
    assert cells
    for key, shown in cells:
        assert shown == format_number(lookup(metrics, key)), key
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 5


def test_secure_evaluation_gives_the_server_only_the_pooled_histogram(tiny_run: Path) -> None:
    """SecAgg+ on: the round record has no per-site histogram, and its pooled AUC is the exact pooled AUC as far as
    its bins tell."""
    records = RunRecords(tiny_run / "federated")
    record = read_json(records.metrics_path(1))  # as written: the keys themselves are checked
    assert record["secagg"] is True
    for site_entry in record["evaluate"]["sites"].values():
        for task_entry in site_entry.values():
            assert set(task_entry) == {"auc", "cases"}  # what the site computed itself, never its histogram
    assert "hist_" not in json.dumps(record)
    metrics = read_json(tiny_run / "metrics.json")
    federated = metrics["methods"]["federated"]
    released_record = records.load_metrics(1)
    for task in ("malignancy", "calcification"):
        pooled = released_record.evaluate.pooled[task]
        assert pooled.secure_sum is True
        released, exact = federated["released_pooled_auc"][task], federated["pooled_auc"][task]
        assert abs(released - exact) <= binning_tolerance(pooled.histogram) + 1e-9, (task, released, exact)


def test_the_run_records_patient_level_privacy(tiny_run: Path) -> None:
    metrics = read_json(tiny_run / "metrics.json")
    assert metrics["run"]["privacy_unit"] == "patient"
    assert "patient-level DP" in (tiny_run / "report.html").read_text()


def test_every_final_checkpoint_has_operating_points_chosen_on_the_validation_split(tiny_run: Path) -> None:
    assignment = pd.read_csv(tiny_run / "site_assignment.csv")
    validation_images = int((assignment["split"] == "val").sum())
    assert 0 < validation_images < int((assignment["split"] == "test").sum())  # the counts tell the splits apart
    checkpoints = {
        "federated": final_checkpoint_dir(tiny_run / "federated"),
        "centralized": tiny_run / "baselines" / "centralized",
        "image_only": tiny_run / "baselines" / "image_only",
    }
    metrics = read_json(tiny_run / "metrics.json")
    for method, folder in checkpoints.items():
        points = load_checkpoint(folder).extra[OPERATING_POINTS_KEY]
        assert points["malignancy"]["n_validation_cases"] == validation_images, method
        listed = metrics["methods"][method]["operating_points"]["tasks"]["malignancy"]["operating_point"]
        assert listed["threshold"] == points["malignancy"]["threshold"], method
    local = sorted((tiny_run / "baselines" / "local_only").iterdir())
    assert len(local) == len(metrics["sites"]) and all((folder / "config.json").is_file() for folder in local)


def test_every_method_has_breast_level_aucs_with_intervals(tiny_run: Path) -> None:
    metrics = read_json(tiny_run / "metrics.json")
    assignment = pd.read_csv(tiny_run / "site_assignment.csv")
    assert metrics["breast_level"]["images_without_laterality"] == 0  # synthetic images all have L/R
    # 4 images per patient, 2 per breast: half as many breast cases as labelled test images
    images = sum(c for c in metrics["methods"]["federated"]["cases"]["malignancy"].values())
    assert metrics["breast_level"]["breasts"]["malignancy"] == images // 2
    assert (assignment["split"] == "test").sum() >= images
    for name, method in metrics["methods"].items():
        breast = method["breast"]
        assert set(breast["pooled_auc"]) == {"malignancy", "calcification"}, name
        assert "pooled_auc_ci" in breast and "mean_site_auc_ci" in breast, name
    assert "<h2>Breast-level AUC</h2>" in (tiny_run / "report.html").read_text()


def test_the_site_field_ablation_is_scored_and_paired_with_centralized(tiny_run: Path) -> None:
    metrics = read_json(tiny_run / "metrics.json")
    ablation = metrics["methods"]["centralized_no_site_fields"]
    assert set(ablation["pooled_auc_minus_centralized_ci"]) == {"malignancy", "calcification"}
    assert metrics["run"]["site_field_ablation_wall_time_s"] > 0
    assert "<h2>Site-field ablation</h2>" in (tiny_run / "report.html").read_text()


def test_the_dp_centralized_baseline_spends_at_most_the_site_budget(tiny_run: Path) -> None:
    metrics = read_json(tiny_run / "metrics.json")
    method = metrics["methods"]["dp_centralized"]
    target = metrics["run"]["target_epsilon"]
    assert 0 < method["privacy"]["epsilon_spent"] <= target * (1 + 1e-6)
    assert method["privacy"]["unit"] == "patient"
    assert set(method["pooled_auc_ci"]) == {"malignancy", "calcification"}
    assert set(method["mean_site_auc_minus_federated_ci"]) == {"malignancy", "calcification"}
    points = load_checkpoint(tiny_run / "baselines" / "dp_centralized").extra[OPERATING_POINTS_KEY]
    assert (
        points["malignancy"]["threshold"]
        == (method["operating_points"]["tasks"]["malignancy"]["operating_point"]["threshold"])
    )
    assert "DP-centralized" in (tiny_run / "report.html").read_text()


def test_every_scored_model_has_a_validation_auc(tiny_run: Path) -> None:
    methods = read_json(tiny_run / "metrics.json")["methods"]
    for name in ("federated", "centralized", "dp_centralized", "local_only", "image_only", "public_pretrained"):
        assert set(methods[name]["validation_pooled_auc"]) == {"malignancy", "calcification"}, name
    assert "validation_pooled_auc" not in methods["oracle"]  # no model, nothing scored on validation
