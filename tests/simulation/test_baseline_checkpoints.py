"""Baseline checkpoints: operating points chosen on the sites' pooled validation scores, or none without them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bcvlm_model import TASKS
from bcvlm_model.checkpoint import load_checkpoint
from bcvlm_model.data.manifest import read_manifest
from bcvlm_model.inference.operating_point import OPERATING_POINTS_KEY, read_thresholds, threshold_from_histogram
from bcvlm_model.metrics import ScoreHistogram, score_histogram
from bcvlm_model.model import build_model
from bcvlm_model.model_config import RANDOM_INIT, FusionConfig, ImageEncoderConfig, ModelConfig, TextEncoderConfig
from bcvlm_model.text import TextConfig
from bcvlm_simulation.baseline_checkpoints import (
    pooled_validation_histograms,
    save_with_operating_points,
    validation_aucs,
)
from bcvlm_testing.federation_sites import make_site, tiny_preprocess

MODEL_CFG = ModelConfig(
    kind="vlm",
    image_encoder=ImageEncoderConfig(weights=RANDOM_INIT, trainable_stages=1),
    text_encoder=TextEncoderConfig(num_layers=1),
    fusion=FusionConfig(dim=32, heads=4),
    dropout=0.0,
)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(MODEL_CFG).eval()


def _histogram(negatives_at: int, positives_at: int) -> ScoreHistogram:
    positives, negatives = np.zeros(100, np.int64), np.zeros(100, np.int64)
    negatives[negatives_at : negatives_at + 10] = 3
    positives[positives_at : positives_at + 10] = 3
    return ScoreHistogram(positives, negatives)


def test_the_checkpoint_carries_the_threshold_of_the_validation_histogram(tmp_path: Path, model) -> None:
    validation = {task: _histogram(10, 40) for task in TASKS}
    record = save_with_operating_points(
        tmp_path / "centralized",
        model,
        MODEL_CFG,
        tiny_preprocess(),
        TextConfig(),
        validation,
        target_specificity=0.9,
        min_cases=5,
        method="centralized",
    )
    thresholds = read_thresholds(load_checkpoint(tmp_path / "centralized").extra)
    expected = threshold_from_histogram(validation[TASKS[0]], 0.9).threshold
    assert thresholds == {task: pytest.approx(expected) for task in TASKS}
    assert record["checkpoint"] == str(tmp_path / "centralized")


def test_without_validation_cases_the_checkpoint_has_no_operating_point(tmp_path: Path, model) -> None:
    empty = {task: ScoreHistogram.empty(100) for task in TASKS}
    record = save_with_operating_points(
        tmp_path / "local",
        model,
        MODEL_CFG,
        tiny_preprocess(),
        TextConfig(),
        empty,
        target_specificity=0.9,
        min_cases=1,
        method="local_only",
    )
    assert OPERATING_POINTS_KEY not in load_checkpoint(tmp_path / "local").extra
    assert all("no validation data" in entry["withheld"] for entry in record["tasks"].values())


def test_pooled_validation_histograms_count_every_labelled_validation_image(tmp_path: Path, model) -> None:
    manifest = read_manifest(make_site(tmp_path, "site", n_train=2, n_test=6, seed=0).parent / "manifest.csv")
    validation = manifest[manifest["split"] == "test"].reset_index(drop=True)
    tables = {"a": validation.iloc[:4], "b": validation.iloc[4:], "no_validation": validation.iloc[:0]}
    pooled = pooled_validation_histograms(
        model, tables, tiny_preprocess(), TextConfig(), MODEL_CFG, str(tmp_path / "site" / "cache"), 4, n_bins=100
    )
    for task in TASKS:
        assert pooled[task].n_positive + pooled[task].n_negative == int(validation[task].notna().sum()) > 0


def test_validation_aucs_rank_the_validation_scores_and_need_min_cases() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1], dtype=float)
    ranked = score_histogram(np.array([0.1, 0.2, 0.7, 0.3, 0.8, 0.9]), labels, 100)
    aucs = validation_aucs({"malignancy": ranked, "calcification": ranked}, min_cases=3)
    assert aucs["malignancy"] == pytest.approx(8 / 9, abs=1e-4)  # 8 of the 9 positive-negative pairs in order
    assert validation_aucs({"malignancy": ranked}, min_cases=4) == {"malignancy": None}
