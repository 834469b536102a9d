"""Leakage guard: label and reading-outcome fields are refused with a reason unless explicitly allowed."""

from __future__ import annotations

import pytest

from bcvlm_model.text import LeakageError, TextConfig, check_report_fields, leakage_reason, render_report

LEAKING = [
    "cancer",
    "biopsy",
    "invasive",
    "BIRADS",
    "breast_birads",
    "finding_birads",
    "difficult_negative_case",
    "finding_categories",
    "malignancy",
    "calcification",
    "malignancy_label_kind",
    "oracle_malignancy",
]
SAFE = ["age", "view", "laterality", "implant", "density", "manufacturer", "machine_id", "site_id"]


@pytest.mark.parametrize("name", LEAKING)
def test_leaking_fields_are_refused_with_a_reason(name: str) -> None:
    assert leakage_reason(name)
    with pytest.raises(LeakageError, match=f"'{name}'.*allow_label_fields"):
        render_report({name: 1, "age": 50}, TextConfig(fields=["age", name]))


def test_safe_fields_pass_and_allowing_is_explicit() -> None:
    assert all(leakage_reason(name) is None for name in SAFE)
    check_report_fields(SAFE)
    text = render_report({"BIRADS": 4}, TextConfig(fields=["BIRADS"], allow_label_fields=True))
    assert "4" in text


def test_error_lists_every_leaking_field() -> None:
    with pytest.raises(LeakageError) as info:
        check_report_fields(["age", "cancer", "BIRADS"])
    assert "'cancer'" in str(info.value) and "'BIRADS'" in str(info.value) and "'age'" not in str(info.value)
