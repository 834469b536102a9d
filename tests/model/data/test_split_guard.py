"""The patient-overlap guard: a patient with images in two splits is found and named."""

from __future__ import annotations

import pandas as pd
import pytest

from bcvlm_model.data.split_guard import PatientOverlapError, check_patients_disjoint, shared_patients


def _table(rows: list[tuple[str, str | None]]) -> pd.DataFrame:
    return pd.DataFrame({"patient_id": [p for p, _ in rows], "split": [s for _, s in rows]})


def test_disjoint_splits_pass_and_rows_without_a_split_are_ignored() -> None:
    table = _table([("a", "train"), ("a", "train"), ("b", "test"), ("c", "val"), ("b", None)])
    assert shared_patients(table) == {}
    check_patients_disjoint(table, "m.csv")


def test_a_patient_in_train_and_test_is_refused_naming_both_splits() -> None:
    table = _table([("a", "train"), ("a", "test"), ("b", "train"), ("c", "test")])
    with pytest.raises(PatientOverlapError, match=r"m\.csv: .*1 in both 'test' and 'train' \(e\.g\. a\)"):
        check_patients_disjoint(table, "m.csv")


def test_val_and_test_overlap_is_found_too() -> None:
    assert shared_patients(_table([("a", "val"), ("a", "test"), ("b", "train")])) == {("test", "val"): ["a"]}
