"""The round record (bcvlm_client.round_record): exact JSON round trip, and clear refusals of files it cannot read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bcvlm_client.round_record import (
    ByteCount,
    EvaluateStage,
    FitSiteEntry,
    FitStage,
    OperatingPointsRecord,
    PooledTaskRecord,
    RoundRecord,
    RoundRecordError,
    SiteOutcome,
    SiteTaskRecord,
    TaskOperatingPoint,
    load_round_record,
    record_to_json,
    save_round_record,
)
from bcvlm_model.metrics import ScoreHistogram, pool_histograms


def _record() -> RoundRecord:
    """A round with one trained site (plain fit reply with an update norm) and one declined site."""
    histogram = ScoreHistogram(np.array([0, 1, 3, 4]), np.array([5, 2, 1, 0]))
    pooled = pool_histograms([histogram], n_bins=4, min_cases=1, specificity=0.9)
    withheld = pool_histograms([histogram], n_bins=4, min_cases=50, specificity=0.9)
    return RoundRecord(
        round=3,
        strategy="fedavg",
        secagg=False,
        wall_seconds=12.25,
        status="trained",
        failure=None,
        site_outcomes={
            "11": SiteOutcome(outcome="trained", evaluate="ok"),
            "12": SiteOutcome(outcome="declined", code=1, reason="BUDGET_EXHAUSTED"),
        },
        fit=FitStage(
            sites={
                "11": FitSiteEntry(num_examples=40, epsilon=0.75, declined=0, steps=5, rejected=None, update_norm=2.5),
                "12": FitSiteEntry(num_examples=0, epsilon=None, declined=1, steps=0, rejected=None),
            },
            failures=0,
            accepted=1,
            outcome="updated from 1 sites",
        ),
        epsilon={"11": 0.75, "12": None},
        evaluate=EvaluateStage(
            loss=0.5,
            failures=0,
            cases={"11": {"cases_malignancy": 16}},
            pooled={
                "malignancy": PooledTaskRecord.from_pooled(pooled, n_sites=1, secure_sum=False),
                "calcification": PooledTaskRecord.from_pooled(withheld, n_sites=1, secure_sum=False),
            },
            sites={"11": {"malignancy": SiteTaskRecord(auc=None, cases=16)}},
        ),
        bytes={"11": ByteCount(up=1000, down=2000)},
        operating_points=OperatingPointsRecord(
            chosen_on="pooled validation histograms released by the sites",
            target_specificity=0.9,
            tasks={
                "malignancy": TaskOperatingPoint(
                    operating_point={"threshold": 0.5, "n_validation_cases": 16}, withheld=None
                ),
                "calcification": TaskOperatingPoint(
                    operating_point=None, withheld="fewer than 10 validation cases", n_positive=2, n_negative=3
                ),
            },
        ),
    )


def _written(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(data))
    return path


def test_a_record_survives_the_json_round_trip_unchanged(tmp_path: Path) -> None:
    record = _record()
    assert load_round_record(save_round_record(tmp_path / "metrics.json", record)) == record


def test_a_record_file_survives_loading_and_saving_byte_for_byte(tmp_path: Path) -> None:
    first = save_round_record(tmp_path / "first.json", _record())
    second = save_round_record(tmp_path / "second.json", load_round_record(first))
    assert second.read_bytes() == first.read_bytes()


def test_optional_fields_that_are_none_are_left_out_of_the_json() -> None:
    outcome = record_to_json(_record())["site_outcomes"]["12"]
    assert outcome == {"outcome": "declined", "code": 1, "reason": "BUDGET_EXHAUSTED"}


def test_a_missing_field_is_refused_naming_the_file_and_the_field(tmp_path: Path) -> None:
    data = record_to_json(_record())
    del data["operating_points"]["tasks"]["malignancy"]["withheld"]
    path = _written(tmp_path, data)
    with pytest.raises(RoundRecordError, match="missing field 'operating_points.tasks.malignancy.withheld'") as error:
        load_round_record(path)
    assert str(path) in str(error.value)


def test_a_record_from_before_site_outcomes_is_refused(tmp_path: Path) -> None:
    data = record_to_json(_record())
    for key in ("status", "failure", "site_outcomes", "operating_points"):
        del data[key]
    with pytest.raises(RoundRecordError, match="missing field 'status'"):
        load_round_record(_written(tmp_path, data))


def test_an_unknown_field_is_refused(tmp_path: Path) -> None:
    data = record_to_json(_record())
    data["fit"]["sites"]["11"]["train_seconds"] = 4.0
    with pytest.raises(RoundRecordError, match="unknown field 'fit.sites.11.train_seconds'"):
        load_round_record(_written(tmp_path, data))


def test_a_value_of_the_wrong_type_is_refused(tmp_path: Path) -> None:
    data = record_to_json(_record())
    data["bytes"]["11"]["up"] = "1000"
    with pytest.raises(RoundRecordError, match="field 'bytes.11.up' must be int, got '1000'"):
        load_round_record(_written(tmp_path, data))


def test_a_file_that_is_not_json_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    path.write_text('{"round": 1,')
    with pytest.raises(RoundRecordError, match=f"{path}: not JSON"):
        load_round_record(path)


def test_a_non_finite_number_is_not_written(tmp_path: Path) -> None:
    record = _record()
    record.wall_seconds = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        save_round_record(tmp_path / "metrics.json", record)
    assert not (tmp_path / "metrics.json").exists()
