"""PatientRecords: under patient-level DP the Poisson sampler draws whole patients, never part of one."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader
from torch.utils.data._utils.collate import default_collate

from bcvlm_model.data.patient_records import RECORD_INDEX, PatientRecordCollator, PatientRecords, records_per_batch
from bcvlm_model.privacy.dp_training import DPTrainState, make_private

IMAGES_PER_PATIENT = [1, 2, 4, 3, 4, 2, 4, 1, 3, 4, 2, 4]


def _images() -> tuple[list[dict], list[str]]:
    items, owners = [], []
    for patient, count in enumerate(IMAGES_PER_PATIENT):
        for view in range(count):
            items.append({"x": torch.tensor([float(view)]), "patient": torch.tensor(patient)})
            owners.append(f"P{patient:03d}")
    return items, owners


def _private_loader(batch_patients: int) -> DataLoader:
    images, owners = _images()
    records = PatientRecords(images, owners)
    loader = DataLoader(records, batch_size=batch_patients, collate_fn=PatientRecordCollator(default_collate))
    model = torch.nn.Linear(1, 1)
    dp = DPTrainState(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5)
    return make_private(model, torch.optim.SGD(model.parameters(), lr=0.1), loader, dp).loader


def test_each_record_is_one_patient_with_all_of_their_images() -> None:
    images, owners = _images()
    records = PatientRecords(images, owners)
    assert len(records) == len(IMAGES_PER_PATIENT)
    assert [len(records[k]) for k in range(len(records))] == IMAGES_PER_PATIENT


def test_poisson_batches_hold_whole_patients_and_index_them() -> None:
    loader = _private_loader(batch_patients=3)
    seen_patients = 0
    for _ in range(20):
        for batch in loader:
            if not batch:  # an empty Poisson batch
                continue
            per_patient = Counter(batch["patient"].tolist())
            for patient, rows in per_patient.items():
                assert rows == IMAGES_PER_PATIENT[patient]  # all of a sampled patient's images, never part
            slots = batch[RECORD_INDEX].tolist()
            assert sorted(set(slots)) == list(range(len(per_patient)))
            for slot in set(slots):  # one slot = one patient
                assert len({p for p, s in zip(batch["patient"].tolist(), slots) if s == slot}) == 1
            seen_patients += len(per_patient)
    assert seen_patients > 0


def test_the_sample_rate_counts_patients_not_images() -> None:
    loader = _private_loader(batch_patients=3)
    assert loader.sample_rate == pytest.approx(1 / 4)  # 12 patients in batches of 3, whatever the 34 images


def test_records_per_batch_keeps_the_expected_number_of_images() -> None:
    assert records_per_batch(num_images=400, num_records=100, images_per_batch=8) == 2
    assert records_per_batch(num_images=10, num_records=10, images_per_batch=8) == 8
    assert records_per_batch(num_images=400, num_records=10, images_per_batch=8) == 1
