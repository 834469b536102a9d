"""The one DataLoader factory: manifest rows -> ReportCollator batches, grouped by patient for patient-level DP."""

from __future__ import annotations

import os

import pandas as pd
import torch
from torch.utils.data import DataLoader

from bcvlm_model.data.dataset import MammographyDataset
from bcvlm_model.data.patient_records import PatientRecordCollator, PatientRecords, records_per_batch
from bcvlm_model.data.preprocess_config import PreprocessConfig
from bcvlm_model.model_config import ModelConfig
from bcvlm_model.privacy.privacy_unit import PrivacyUnit
from bcvlm_model.text import TextConfig
from bcvlm_model.text.collator_factory import build_report_collator


def build_loader(
    rows: pd.DataFrame,
    preprocess: PreprocessConfig,
    text: TextConfig,
    model_cfg: ModelConfig,
    *,
    cache_dir: str | os.PathLike[str] | None,
    decode_on_the_fly: bool = True,
    batch_size: int,
    train: bool,
    seed: int,
    num_workers: int = 0,
    privacy_unit: PrivacyUnit | None = None,
) -> DataLoader:
    """Shuffled, augmented batches when `train`; in manifest order otherwise.

    `privacy_unit=patient` (training under DP) makes each item one patient with all of their images; `batch_size`
    stays the expected number of images per batch, so the loader draws about batch_size x patients / images
    patients per batch. `decode_on_the_fly=False` makes a missing cached array an error instead of a DICOM decode.
    The DP wrapper (`make_private`) replaces the shuffle with Poisson sampling of those items.
    """
    images = MammographyDataset(rows.reset_index(drop=True), preprocess, cache_dir, decode_on_the_fly=decode_on_the_fly)
    collate = build_report_collator(text, model_cfg, train=train, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    if train and privacy_unit is PrivacyUnit.patient:
        records = PatientRecords(images, images.manifest["patient_id"].tolist())
        return DataLoader(
            records,
            batch_size=records_per_batch(len(images), len(records), batch_size),
            shuffle=True,
            collate_fn=PatientRecordCollator(collate),
            num_workers=num_workers,
            generator=generator,
        )
    return DataLoader(
        images, batch_size=batch_size, shuffle=train, collate_fn=collate, num_workers=num_workers, generator=generator
    )
