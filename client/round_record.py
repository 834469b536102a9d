"""The round record: what the server writes per round into `rounds/round-XXXX/metrics.json`, as typed dataclasses.

The server writes it with `save_round_record` and every reader loads it with `load_round_record`; the JSON is the
dataclasses' fields, nested. Fields whose default is None are optional: left out of the JSON when None, and None
when absent. A file that lacks a required field, holds a field this version does not know, or a value of the wrong
type is refused with a `RoundRecordError` naming the file and the field (files written before site outcomes and
operating points were recorded are refused this way, rather than read with made-up values).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, Union

from bcvlm_model.atomic_io import atomic_write_text
from bcvlm_model.metrics import PooledMetrics

ROUND_RECORD_FILE = "metrics.json"

ROC_SUMMARY_KIND = (
    "ROC summary: the threshold is chosen on these test images, so it is not an operating point (operating "
    "points are chosen on validation data: see `operating_points`)"
)


class RoundRecordError(ValueError):
    """A round record that cannot be read: which file, which field, what is wrong."""


@dataclass
class FitSiteEntry:
    """What one site's fit reply said, and whether the server rejected its update."""

    num_examples: int
    epsilon: float | None
    declined: int
    steps: int
    rejected: str | None
    update_norm: float | None = None
    """Only without SecAgg+ (the server sees no single update under it)."""


@dataclass
class FitStage:
    """The training stage: every replying site, how many failed or were aggregated, what became of the model."""

    sites: dict[str, FitSiteEntry]
    failures: int
    accepted: int
    outcome: str


@dataclass
class SiteOutcome:
    """One site's round: trained / declined (code, reason) / rejected / failed (error, reason) / dropped."""

    outcome: str
    code: int | None = None
    reason: str | None = None
    error: str | None = None
    evaluate: str | None = None
    """The evaluation stage: `ok`, why there is no result, or None when the site was not asked."""


@dataclass
class HistogramCounts:
    """A pooled score histogram's counts per bin."""

    positives: list[int]
    negatives: list[int]


@dataclass
class PooledTaskRecord:
    """One task's metrics on the pooled histogram (`bcvlm_model.metrics.pool_histograms`)."""

    n_positive: int
    n_negative: int
    specificity_target: float
    auc: float | None
    sensitivity_at_specificity: float | None
    withheld: str | None
    n_sites: int
    histogram: HistogramCounts
    secure_sum: bool
    sensitivity_at_specificity_kind: str

    @classmethod
    def from_pooled(cls, metrics: PooledMetrics, *, n_sites: int, secure_sum: bool) -> PooledTaskRecord:
        """The record of `metrics`, pooled over `n_sites` sites (under SecAgg+ when `secure_sum`)."""
        if metrics.specificity_target is None:
            raise ValueError("a round record's pooled metrics need a specificity target")
        return cls(
            n_positive=metrics.n_positive,
            n_negative=metrics.n_negative,
            specificity_target=metrics.specificity_target,
            auc=metrics.auc,
            sensitivity_at_specificity=metrics.sensitivity_at_specificity,
            withheld=metrics.withheld,
            n_sites=n_sites,
            histogram=HistogramCounts(
                positives=[int(v) for v in metrics.histogram.positives],
                negatives=[int(v) for v in metrics.histogram.negatives],
            ),
            secure_sum=secure_sum,
            sensitivity_at_specificity_kind=ROC_SUMMARY_KIND,
        )


@dataclass
class SiteTaskRecord:
    """One site's own AUC on one task (None when the site withheld it) and its released case count."""

    auc: float | None
    cases: int


@dataclass
class EvaluateStage:
    """The evaluation stage: mean loss, failures, released case counts, pooled metrics, what each site reported."""

    loss: float | None
    failures: int
    cases: dict[str, dict[str, int]]
    pooled: dict[str, PooledTaskRecord]
    sites: dict[str, dict[str, SiteTaskRecord]]


@dataclass
class ByteCount:
    """Bytes a site sent (up) and received (down) in the round."""

    up: int
    down: int


@dataclass
class TaskOperatingPoint:
    """A task's operating point (the checkpoint's entry), or why it has none with the validation case counts."""

    operating_point: dict[str, Any] | None
    withheld: str | None
    n_positive: int | None = None
    n_negative: int | None = None


@dataclass
class OperatingPointsRecord:
    """The operating points chosen this round, on what data, at which target specificity."""

    chosen_on: str
    target_specificity: float
    tasks: dict[str, TaskOperatingPoint]


@dataclass
class RoundRecord:
    """One round as the server saw it. Sites are Flower node ids (as strings)."""

    round: int
    strategy: str
    secagg: bool
    wall_seconds: float
    status: str
    """`trained` or `failed`."""
    failure: str | None
    site_outcomes: dict[str, SiteOutcome]
    fit: FitStage
    epsilon: dict[str, float | None]
    evaluate: EvaluateStage
    bytes: dict[str, ByteCount]
    operating_points: OperatingPointsRecord

    @property
    def failed(self) -> bool:
        return self.status == "failed"


Record = TypeVar("Record")


def record_to_json(value: Any) -> Any:
    """Plain JSON data of a record (a dataclass, possibly nested): optional fields that are None are left out."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            item.name: record_to_json(getattr(value, item.name))
            for item in dataclasses.fields(value)
            if not (item.default is None and getattr(value, item.name) is None)
        }
    if isinstance(value, dict):
        return {str(key): record_to_json(entry) for key, entry in value.items()}
    if isinstance(value, (list, tuple)):
        return [record_to_json(entry) for entry in value]
    if isinstance(value, float) and not math.isfinite(value):
        # JSON has no NaN / infinity; the writer records an undefined number as None.
        raise ValueError(f"a round record holds the non-finite number {value}")
    return value


def _type_name(kind: Any) -> str:
    return getattr(kind, "__name__", None) or str(kind)


def _convert(kind: Any, value: Any, where: str) -> Any:
    """`value` (parsed JSON) as `kind`; RoundRecordError naming `where` when it is not one."""
    if kind is Any:
        return value
    origin = typing.get_origin(kind)
    if origin in (Union, types.UnionType):
        options = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        if value is None and len(options) < len(typing.get_args(kind)):
            return None
        if len(options) != 1:
            raise TypeError(f"round record field {where}: only `X | None` unions are supported")
        return _convert(options[0], value, where)
    if dataclasses.is_dataclass(kind):
        return _dataclass_from_json(kind, value, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise RoundRecordError(f"field '{where}' must be an object, got {type(value).__name__}")
        _, entry_kind = typing.get_args(kind)
        return {str(key): _convert(entry_kind, entry, f"{where}.{key}") for key, entry in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise RoundRecordError(f"field '{where}' must be a list, got {type(value).__name__}")
        (entry_kind,) = typing.get_args(kind)
        return [_convert(entry_kind, entry, f"{where}[{index}]") for index, entry in enumerate(value)]
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind in (int, str, bool) and isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise RoundRecordError(f"field '{where}' must be {_type_name(kind)}, got {value!r}")


def _dataclass_from_json(kind: type[Record], value: Any, where: str) -> Record:
    if not isinstance(value, dict):
        raise RoundRecordError(f"field '{where or kind.__name__}' must be an object, got {type(value).__name__}")
    hints = typing.get_type_hints(kind)
    prefix = f"{where}." if where else ""
    known = {item.name for item in dataclasses.fields(kind)}  # type: ignore[arg-type]
    unknown = sorted(set(value) - known)
    if unknown:
        raise RoundRecordError(f"unknown field '{prefix}{unknown[0]}' (written by a newer bcvlm?)")
    arguments = {}
    for item in dataclasses.fields(kind):  # type: ignore[arg-type]
        if item.name in value:
            arguments[item.name] = _convert(hints[item.name], value[item.name], prefix + item.name)
        elif item.default is not None:
            raise RoundRecordError(f"missing field '{prefix}{item.name}' (a record of an older bcvlm?)")
    return kind(**arguments)


def record_from_json(kind: type[Record], data: Any, where: str = "") -> Record:
    """The `kind` record (a dataclass of this module) of parsed JSON `data`; RoundRecordError naming the first
    missing, unknown or mistyped field (`where`: the field path of `data` in its file)."""
    return _dataclass_from_json(kind, data, where)


def round_record_from_json(data: Any) -> RoundRecord:
    """The round record of parsed JSON `data` (see `record_from_json`)."""
    return record_from_json(RoundRecord, data)


def save_round_record(path: str | os.PathLike[str], record: RoundRecord) -> Path:
    """Write `record` to `path` atomically (indented JSON, keys sorted)."""
    return atomic_write_text(path, json.dumps(record_to_json(record), indent=2, sort_keys=True) + "\n")


def load_round_record(path: str | os.PathLike[str]) -> RoundRecord:
    """Read a round's metrics.json; RoundRecordError naming the file and the field when it is not a round record."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RoundRecordError(f"{path}: not JSON ({exc})") from exc
    try:
        return round_record_from_json(data)
    except RoundRecordError as exc:
        raise RoundRecordError(f"{path}: not a round record this bcvlm can read: {exc}") from exc
