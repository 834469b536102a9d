"""The default validation split: whole patients, stratified by malignancy, seeded, and only when none exists."""

from __future__ import annotations

import pandas as pd

from bcvlm_model.data.validation_split import validation_patients, with_default_validation


def _manifest(n_patients: int = 40, images_per_patient: int = 2, split: str = "train") -> pd.DataFrame:
    rows = []
    for patient in range(n_patients):
        for image in range(images_per_patient):
            rows.append(
                {
                    "patient_id": f"p{patient}",
                    "image_id": f"p{patient}-{image}",
                    "malignancy": float(patient % 4 == 0 and image == 0),  # a quarter of the patients are positive
                    "split": split,
                }
            )
    return pd.DataFrame(rows)


def test_whole_patients_move_to_validation() -> None:
    updated = with_default_validation(_manifest(), fraction=0.25, seed=3)
    splits_per_patient = updated.groupby("patient_id")["split"].nunique()
    assert (splits_per_patient == 1).all()
    assert updated.loc[updated["split"] == "val", "patient_id"].nunique() == 10


def test_the_validation_split_keeps_the_label_mix() -> None:
    chosen = validation_patients(_manifest(), fraction=0.2, seed=3)
    positives = [patient for patient in chosen if int(patient[1:]) % 4 == 0]
    assert len(positives) == 2 and len(chosen) - len(positives) == 6  # 20% of 10 positive and of 30 negative patients


def test_the_same_seed_gives_the_same_split_and_another_seed_another() -> None:
    table = _manifest()
    first = validation_patients(table, fraction=0.25, seed=3)
    assert validation_patients(table.sample(frac=1.0, random_state=1), fraction=0.25, seed=3) == first
    assert validation_patients(table, fraction=0.25, seed=4) != first


def test_a_manifest_with_its_own_validation_rows_is_kept() -> None:
    table = pd.concat([_manifest(10), _manifest(2, split="val").assign(patient_id=lambda t: "v" + t["patient_id"])])
    assert with_default_validation(table, fraction=0.5, seed=0).equals(table)


def test_a_fraction_of_zero_holds_out_nobody() -> None:
    table = _manifest()
    assert with_default_validation(table, fraction=0.0, seed=0).equals(table)


def test_every_stratum_keeps_a_training_patient() -> None:
    chosen = validation_patients(_manifest(n_patients=2), fraction=0.9, seed=0)
    assert chosen == []  # one positive and one negative patient: each stays in training
