"""`bcvlm predict` end to end: collect images, apply metadata overrides, predict, aggregate, add binary calls."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bcvlm_model import TASKS
from bcvlm_model.inference.aggregation import AGGREGATIONS, aggregate_breasts, aggregate_exams
from bcvlm_model.inference.exams import assign_exam_keys
from bcvlm_model.inference.inputs import collect_images
from bcvlm_model.inference.metadata_overrides import apply_metadata_overrides, read_metadata_overrides
from bcvlm_model.inference.operating_point import OPERATING_POINTS_KEY
from bcvlm_model.inference.predictor import CheckpointPredictor
from bcvlm_model.inference.results import PredictionResult, add_binary_calls


@dataclass
class PredictOptions:
    """How `predict` runs: aggregation per level, batch size, device, heatmaps, loader workers, progress bar."""

    aggregation: str = "mean"
    """Images -> breast: "mean" or "max" of the image probabilities."""
    exam_aggregation: str = "max"
    """Breasts -> exam: "max" (default: an exam is as suspicious as its worse breast) or "mean"."""
    batch_size: int = 4
    device: str = "auto"
    allow_bf16: bool = True
    heatmap_dir: str | None = None
    heatmap_task: str = TASKS[0]
    workers: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("aggregation", "exam_aggregation"):
            if getattr(self, name) not in AGGREGATIONS:
                raise ValueError(f"{name} must be one of {AGGREGATIONS}, got '{getattr(self, name)}'")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")


def _exam_notes(exams: pd.DataFrame) -> pd.DataFrame:
    noted = exams.copy()
    noted["note"] = [
        f"predicted from {n} image(s); missing views: {missing}" if missing else ""
        for n, missing in zip(noted["n_images"], noted["missing_views"])
    ]
    return noted


def _empty_levels() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    probabilities = [f"p_{task}" for task in TASKS]
    return (
        pd.DataFrame(columns=["exam_id", "breast_id", "image_id", *probabilities]),
        pd.DataFrame(columns=["breast_id", "exam_id", *probabilities]),
        pd.DataFrame(columns=["exam_id", *probabilities, "note"]),
    )


def predict(
    checkpoint_dir: str | os.PathLike[str],
    input_path: str | os.PathLike[str],
    metadata_csv: str | os.PathLike[str] | None = None,
    options: PredictOptions | None = None,
) -> PredictionResult:
    """Predict every exam found under `input_path` with the checkpoint's own preprocessing, template and threshold."""
    options = options or PredictOptions()
    predictor = CheckpointPredictor(checkpoint_dir, options.device, options.allow_bf16)
    manifest, skipped = collect_images(input_path, progress=options.progress)
    files_seen = len(manifest) + len(skipped)
    if metadata_csv is not None and len(manifest):
        manifest = apply_metadata_overrides(manifest, read_metadata_overrides(metadata_csv), origin=str(metadata_csv))
    rows = assign_exam_keys(manifest)
    if len(rows):
        predicted = predictor.predict_images(
            rows, options.batch_size, options.heatmap_dir, options.heatmap_task, options.workers, options.progress
        )
        skipped.extend(predicted.skipped)
        images = predicted.table
    else:
        images = pd.DataFrame()
    if len(images):
        images = images.sort_values(["exam_id", "laterality", "view", "image_id"], kind="stable").reset_index(drop=True)
        breasts = aggregate_breasts(images, TASKS, options.aggregation)
        exams = _exam_notes(aggregate_exams(breasts, images, TASKS, options.exam_aggregation))
    else:
        images, breasts, exams = _empty_levels()
    thresholds = predictor.thresholds
    images, breasts, exams = (add_binary_calls(table, thresholds, TASKS) for table in (images, breasts, exams))
    return PredictionResult(
        images, breasts, exams, skipped, _run_info(predictor, checkpoint_dir, options, files_seen, len(images))
    )


def _run_info(
    predictor: CheckpointPredictor,
    checkpoint_dir: str | os.PathLike[str],
    options: PredictOptions,
    n_files: int,
    n_predicted: int,
) -> dict[str, Any]:
    cfg = predictor.preprocess_cfg
    return {
        "checkpoint": str(Path(checkpoint_dir).resolve()),
        "model_kind": predictor.model_cfg.kind,
        "tasks": list(TASKS),
        "image_size": [cfg.image_height, cfg.image_width],
        "text_template_version": predictor.text_cfg.template_version,
        "aggregation": {"image_to_breast": options.aggregation, "breast_to_exam": options.exam_aggregation},
        "operating_points": predictor.extra.get(OPERATING_POINTS_KEY, {}),
        "thresholds": predictor.thresholds,
        "binary_call": "call_<task> = 1 when p_<task> >= threshold (validation operating point); "
        "empty when the checkpoint stores no operating point for the task",
        "device": predictor.inference_device.description,
        "files_seen": n_files,
        "images_predicted": n_predicted,
        "heatmap_task": options.heatmap_task if options.heatmap_dir else None,
    }
