"""Runs a checkpoint's model on manifest rows in batches, exactly as in training (same dataset items and collator)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from bcvlm_model import TASKS
from bcvlm_model.data.dataset import MammographyDataset
from bcvlm_model.data.errors import DicomRejected
from bcvlm_model.inference.device import InferenceDevice, resolve_device
from bcvlm_model.inference.gradcam import GradCAM, save_overlay_png
from bcvlm_model.inference.heatmaps import heatmap_path, image_encoder_last_stage
from bcvlm_model.inference.operating_point import read_thresholds
from bcvlm_model.inference.results import SkippedFile
from bcvlm_model.model_inputs import MODEL_INPUT_KEYS

IMAGE_COLUMNS: tuple[str, ...] = (
    "exam_id",
    "breast_id",
    "patient_id",
    "study_id",
    "image_id",
    "laterality",
    "view",
    "path",
    "age",
    "implant",
    "manufacturer",
)
"""Manifest-derived columns copied into every per-image result row (when present)."""


class _ItemsOrRejections(Dataset):
    """MammographyDataset items; a file that fails becomes {"error": reason} instead of failing the batch."""

    def __init__(self, dataset: MammographyDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            item = self.dataset[index]
        except DicomRejected as exc:
            return {"index": index, "error": exc.reason}
        except Exception as exc:  # noqa: BLE001 - one bad file must never stop the batch; the reason is reported
            return {"index": index, "error": f"preprocessing failed ({type(exc).__name__}: {exc})"}
        item["index"] = index
        return item


def _keep_list(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return items


@dataclass
class ImagePredictions:
    """Per-image probabilities (and report text, heatmap path) plus the files that produced none."""

    table: pd.DataFrame
    skipped: list[SkippedFile]


class CheckpointPredictor:
    """A loaded checkpoint ready to predict: model in eval mode on the chosen device, its own preprocessing and text."""

    def __init__(self, checkpoint_dir: str | os.PathLike[str], device: str = "auto", allow_bf16: bool = True) -> None:
        from bcvlm_model.checkpoint import load_checkpoint
        from bcvlm_model.text.collator_factory import build_report_collator

        self.checkpoint_dir = Path(checkpoint_dir)
        if not self.checkpoint_dir.is_dir():
            raise FileNotFoundError(f"checkpoint folder not found: {self.checkpoint_dir}")
        loaded = load_checkpoint(self.checkpoint_dir)
        self.inference_device: InferenceDevice = resolve_device(device, allow_bf16)
        self.model = loaded.model.to(self.inference_device.device).eval()
        self.model_cfg = loaded.model_cfg
        self.preprocess_cfg = loaded.preprocess_cfg
        self.text_cfg = loaded.text_cfg
        self.extra = dict(loaded.extra or {})
        self.thresholds = read_thresholds(self.extra)
        self.collator = build_report_collator(
            self.text_cfg, self.model_cfg, train=False, tokenizer_dir=getattr(loaded, "tokenizer_dir", None)
        )

    def _forward(self, batch: dict[str, Any]) -> torch.Tensor:
        device = self.inference_device.device
        # Precision follows the device: bf16 autocast on a GPU that supports it, fp32 on CPU.
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=self.inference_device.bf16):
            return self.model(*(batch[key].to(device) for key in MODEL_INPUT_KEYS))

    def _predict_batch(
        self, batch: dict[str, Any], cam: GradCAM | None, task_index: int
    ) -> tuple[np.ndarray, torch.Tensor | None]:
        if cam is None:
            with torch.inference_mode():
                logits = self._forward(batch)
            return torch.sigmoid(logits.float()).cpu().numpy(), None
        logits, cams = cam(lambda: self._forward(batch), task_index)
        return torch.sigmoid(logits.float()).cpu().numpy(), cams.cpu()

    def predict_images(
        self,
        manifest: pd.DataFrame,
        batch_size: int = 4,
        heatmap_dir: str | os.PathLike[str] | None = None,
        heatmap_task: str = TASKS[0],
        workers: int = 0,
        progress: bool = True,
    ) -> ImagePredictions:
        """Probabilities `p_<task>` for every manifest row that preprocesses; the others are listed with a reason.

        The rows must be a valid manifest plus optional `exam_id` / `breast_id` columns (see `assign_exam_keys`).
        """
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        if heatmap_task not in TASKS:
            raise ValueError(f"unknown heatmap task '{heatmap_task}': expected one of {TASKS}")
        rows = manifest.reset_index(drop=True)
        dataset = MammographyDataset(rows, self.preprocess_cfg)
        cam = GradCAM(self.model, image_encoder_last_stage(self.model)) if heatmap_dir is not None else None
        loader = DataLoader(
            _ItemsOrRejections(dataset),
            batch_size=batch_size,
            shuffle=False,
            num_workers=workers,
            collate_fn=_keep_list,
        )
        records: list[dict[str, Any]] = []
        skipped: list[SkippedFile] = []
        with tqdm(total=len(rows), desc="bcvlm predict", unit="image", disable=not progress) as bar:
            for items in loader:
                good = [item for item in items if "error" not in item]
                for item in items:
                    if "error" in item:
                        row = rows.iloc[item["index"]]
                        skipped.append(SkippedFile(str(row["path"]), item["error"], str(row["image_id"])))
                if good:
                    records.extend(self._records_for(good, rows, cam, heatmap_dir, heatmap_task))
                bar.update(len(items))
        return ImagePredictions(pd.DataFrame(records), skipped)

    def _records_for(
        self,
        items: list[dict[str, Any]],
        rows: pd.DataFrame,
        cam: GradCAM | None,
        heatmap_dir: str | os.PathLike[str] | None,
        heatmap_task: str,
    ) -> list[dict[str, Any]]:
        batch = self.collator(items)
        reports = self.collator.render_batch(items)
        probabilities, cams = self._predict_batch(batch, cam, TASKS.index(heatmap_task))
        records = []
        for position, item in enumerate(items):
            row = rows.iloc[item["index"]]
            record = {column: row[column] for column in IMAGE_COLUMNS if column in row.index}
            record["report"] = reports[position]
            record["metadata_not_recorded"] = ",".join(
                name for name in self.collator.template.fields if item["metadata"].get(name) is None
            )
            for column, task in enumerate(TASKS):
                record[f"p_{task}"] = float(probabilities[position, column])
            if cams is not None and heatmap_dir is not None:
                unit = item["image"][0] * self.preprocess_cfg.intensity_std + self.preprocess_cfg.intensity_mean
                target = heatmap_path(heatmap_dir, str(row["image_id"]), heatmap_task)
                save_overlay_png(target, unit.numpy(), cams[position].numpy())
                record["heatmap"] = str(target)
            records.append(record)
        return records
