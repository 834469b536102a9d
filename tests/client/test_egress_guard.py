"""Egress guard: whitelisted replies pass; ids, free text, per-image values, extra arrays and leaky errors do not."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.common import Code, FitIns, FitRes, Status, ndarrays_to_parameters
from flwr.compat.common import recorddict_compat as compat
from flwr.supercore.task_identity import TaskIdentity

from bcvlm_client.array_packing import pack_model
from bcvlm_client.egress_guard import EgressViolation, SiteFailure, check_reply, egress_guard_mod
from bcvlm_client.reply_schema import (
    SECURE_EVALUATION_ARRAYS,
    SECURE_EVALUATION_KEY,
    decode_histogram,
    encode_histogram,
)
from bcvlm_model import TASKS
from bcvlm_model.metrics import score_histogram
from bcvlm_model.privacy.mask_expansion import MASK_PRG_CONFIG_KEY, MASK_PRG_NAME

N_BINS = 10
GLOBAL = [np.zeros((3, 2), dtype=np.float32), np.zeros(4, dtype=np.float32)]
PACKED_LENGTH = 10


@pytest.fixture(autouse=True)
def task_identity() -> None:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1


def _instruction(model: list[np.ndarray] | None = None) -> Message:
    model = pack_model(GLOBAL) if model is None else model
    fitins = FitIns(ndarrays_to_parameters(model), {"n-bins": N_BINS, "server-round": 1})
    message = Message(compat.fitins_to_recorddict(fitins, True), dst_node_id=7, message_type="train", group_id="1")
    message.metadata.__dict__["_message_id"] = "m1"
    return message


def _fit_reply(instruction: Message, arrays=None, metrics=None, message: str = "Success") -> Message:
    fitres = FitRes(
        Status(Code.OK, message),
        ndarrays_to_parameters(arrays if arrays is not None else pack_model([a + 0.1 for a in GLOBAL])),
        12,
        metrics if metrics is not None else {"epsilon": 1.2, "declined": 0, "steps": 3},
    )
    return Message(compat.fitres_to_recorddict(fitres, True), reply_to=instruction)


def test_a_whitelisted_fit_reply_passes() -> None:
    instruction = _instruction()
    check_reply(_fit_reply(instruction), instruction)


@pytest.mark.parametrize(
    "arrays, metrics, status",
    [
        (None, {"epsilon": 0.5, "image_id": "rsna-10006-462822612"}, "Success"),
        (None, {"epsilon": "0.5"}, "Success"),
        (None, {"epsilon": 0.5, "scores": b"\x00" * 16}, "Success"),
        (None, {"epsilon": 0.5, "loss": 0.31}, "Success"),
        (None, {"epsilon": 0.5, "train_seconds": 12.5}, "Success"),
        ([a + 0.1 for a in GLOBAL], None, "Success"),
        ([np.zeros(PACKED_LENGTH - 1, np.float32)], None, "Success"),
        ([np.zeros(PACKED_LENGTH + 1, np.float32)], None, "Success"),
        ([np.zeros((1, PACKED_LENGTH), np.float32)], None, "Success"),
        ([np.zeros(PACKED_LENGTH, np.int64)], None, "Success"),
        (pack_model(GLOBAL) * 2, None, "Success"),
        (None, None, "failed reading /data/site/patient-123/img.dcm"),
    ],
    ids=[
        "id-metric",
        "str-value",
        "per-image-bytes",
        "training-loss",
        "training-time",
        "unpacked-arrays",
        "short-packed",
        "long-packed",
        "2d-packed",
        "int-packed",
        "two-packed",
        "free-text-status",
    ],
)
def test_anything_else_in_a_fit_reply_is_blocked(arrays, metrics, status) -> None:
    instruction = _instruction()
    with pytest.raises(EgressViolation):
        check_reply(_fit_reply(instruction, arrays, metrics, status), instruction)


def test_a_packed_reply_of_the_wrong_length_is_refused_naming_both_lengths() -> None:
    instruction = _instruction()
    with pytest.raises(EgressViolation, match=f"{PACKED_LENGTH - 1} values.* {PACKED_LENGTH} "):
        check_reply(_fit_reply(instruction, [np.zeros(PACKED_LENGTH - 1, np.float32)]), instruction)


def test_a_reply_to_an_instruction_with_an_unpacked_model_is_refused() -> None:
    instruction = _instruction(model=GLOBAL)
    with pytest.raises(EgressViolation, match="not packed"):
        check_reply(_fit_reply(instruction, GLOBAL), instruction)


def _secure_evaluation_instruction() -> Message:
    config = {"n-bins": N_BINS, "server-round": 1, SECURE_EVALUATION_KEY: True}
    fitins = FitIns(ndarrays_to_parameters(pack_model(GLOBAL)), config)
    message = Message(compat.fitins_to_recorddict(fitins, True), dst_node_id=7, message_type="train", group_id="1")
    message.metadata.__dict__["_message_id"] = "m2"
    return message


def _histogram_arrays(bins: int = N_BINS, value: float = 0.25) -> list[np.ndarray]:
    return [np.full(bins, value) for _ in range(SECURE_EVALUATION_ARRAYS)]


def test_a_secure_evaluation_reply_of_scaled_histograms_passes() -> None:
    instruction = _secure_evaluation_instruction()
    check_reply(
        _fit_reply(instruction, _histogram_arrays(), {"cases_malignancy": 40, "auc_malignancy": 0.8}), instruction
    )


@pytest.mark.parametrize(
    "arrays",
    [
        _histogram_arrays(bins=N_BINS + 1),
        _histogram_arrays(value=3.0),
        _histogram_arrays()[:-1],
        _histogram_arrays()[: 2 * len(TASKS)],
        _histogram_arrays() + [np.full(N_BINS, 0.25)],
        pack_model([a + 0.1 for a in GLOBAL]),
    ],
    ids=["other-bins", "unscaled-counts", "missing-histogram", "no-validation-split", "extra-array", "model-update"],
)
def test_a_secure_evaluation_reply_carries_exactly_the_scaled_histograms(arrays) -> None:
    instruction = _secure_evaluation_instruction()
    with pytest.raises(EgressViolation):
        check_reply(_fit_reply(instruction, arrays, {"cases_malignancy": 40}), instruction)


def test_an_extra_record_with_a_list_of_scores_is_blocked() -> None:
    instruction = _instruction()
    reply = _fit_reply(instruction)
    reply.content.config_records["debug"] = ConfigRecord({"scores": [0.1, 0.9, 0.4]})
    with pytest.raises(EgressViolation, match="debug"):
        check_reply(reply, instruction)


@pytest.mark.parametrize(
    ("value", "passes"), [(MASK_PRG_NAME, True), (b"hosp_a /data/site", False), (MASK_PRG_NAME.decode(), False)]
)
def test_only_the_fixed_mask_expansion_name_passes_in_its_secagg_field(value: object, passes: bool) -> None:
    instruction = _instruction()
    reply = Message(
        RecordDict({"secaggplus_configs": ConfigRecord({MASK_PRG_CONFIG_KEY: value})}), reply_to=instruction
    )
    if passes:
        check_reply(reply, instruction)
    else:
        with pytest.raises(EgressViolation, match=MASK_PRG_CONFIG_KEY):
            check_reply(reply, instruction)


def test_evaluate_histograms_must_have_the_announced_bin_count() -> None:
    instruction = _instruction()
    histogram = score_histogram(np.array([0.1, 0.8, 0.85]), np.array([0.0, 1.0, 1.0]), N_BINS)
    assert decode_histogram(encode_histogram(histogram), N_BINS) == histogram
    content = RecordDict(
        {"evaluateres.metrics": ConfigRecord({"cases_malignancy": 3, "hist_malignancy": encode_histogram(histogram)})}
    )
    check_reply(Message(content, reply_to=instruction), instruction)
    wrong = score_histogram(np.array([0.1]), np.array([1.0]), N_BINS + 1)
    content.config_records["evaluateres.metrics"]["hist_malignancy"] = encode_histogram(wrong)
    with pytest.raises(EgressViolation, match="histogram"):
        check_reply(Message(content, reply_to=instruction), instruction)


@pytest.mark.parametrize(("bins", "passes"), [(N_BINS, True), (N_BINS + 1, False)])
def test_validation_histograms_in_an_evaluate_reply_must_have_the_announced_bin_count(bins: int, passes: bool) -> None:
    instruction = _instruction()
    histogram = score_histogram(np.array([0.2, 0.7]), np.array([0.0, 1.0]), bins)
    content = RecordDict({"evaluateres.metrics": ConfigRecord({"val_hist_malignancy": encode_histogram(histogram)})})
    if passes:
        check_reply(Message(content, reply_to=instruction), instruction)
    else:
        with pytest.raises(EgressViolation, match="val_hist_malignancy"):
            check_reply(Message(content, reply_to=instruction), instruction)


def test_the_mod_replaces_exception_text_that_could_leak() -> None:
    instruction = _instruction()

    def failing(message, context):
        raise FileNotFoundError("/data/site/patient-123/img.dcm")

    with pytest.raises(SiteFailure) as raised:
        egress_guard_mod(instruction, None, failing)  # type: ignore[arg-type]
    assert "patient" not in str(raised.value) and "FileNotFoundError" in str(raised.value)
