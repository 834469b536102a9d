"""Patient records for patient-level DP: one item per patient (all of their images), flattened back at collation."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch.utils.data import Dataset

RECORD_INDEX = "record_index"
"""Batch field: for each image row of a batch, the slot (0..records-1) of the patient it belongs to."""


class PatientRecords(Dataset):
    """Groups an image dataset by patient: item k is the list of patient k's image items, in manifest order.

    Under patient-level DP this is the dataset Opacus samples from, so its Poisson sampling draws whole patients.
    """

    def __init__(self, images: Dataset, patient_ids: Sequence[Any]) -> None:
        if len(patient_ids) != len(images):  # type: ignore[arg-type]
            raise ValueError(f"{len(patient_ids)} patient ids for {len(images)} images")  # type: ignore[arg-type]
        groups: dict[str, list[int]] = {}
        for row, patient in enumerate(patient_ids):
            groups.setdefault(str(patient), []).append(row)
        self.images = images
        self.patient_ids: list[str] = list(groups)
        self.rows: list[list[int]] = list(groups.values())

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> list[Any]:
        return [self.images[row] for row in self.rows[index]]


class PatientRecordCollator:
    """Collates a list of patient records into one image batch plus `record_index` (each image's patient slot)."""

    def __init__(self, collate_images: Callable[[list[Any]], Any]) -> None:
        self.collate_images = collate_images

    def __call__(self, records: list[list[Any]]) -> Any:
        items = [item for record in records for item in record]
        batch = self.collate_images(items)
        batch[RECORD_INDEX] = torch.tensor(
            [slot for slot, record in enumerate(records) for _ in record], dtype=torch.long
        )
        return batch


def records_per_batch(num_images: int, num_records: int, images_per_batch: int) -> int:
    """Patients per batch that keep the expected number of images per batch at `images_per_batch`."""
    if num_images <= 0 or num_records <= 0:
        raise ValueError(f"need images and records, got {num_images} images in {num_records} records")
    return max(1, round(images_per_batch * num_records / num_images))
