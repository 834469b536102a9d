"""Egress guard: a ClientApp mod that lets only model arrays and whitelisted aggregate metrics leave the site.

Anything else in a reply (strings, ids, paths, per-image values, unexpected arrays or keys) raises
`EgressViolation` before the message is sent. Exceptions leaving the ClientApp are replaced by a generic one,
because Flower copies an exception's text into the error reply sent to the server.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np
from flwr.app import ArrayRecord, Context, Message, RecordDict
from flwr.common import bytes_to_ndarray
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key

from bcvlm_client.array_packing import PackedModelError, packed_form, packed_vector
from bcvlm_client.reply_schema import (
    EVALUATE_METRICS,
    FIT_METRICS,
    SECURE_EVALUATION_ARRAYS,
    SECURE_EVALUATION_METRICS,
    asks_secure_evaluation,
    decode_histogram,
)
from bcvlm_model.privacy.mask_expansion import MASK_PRG_CONFIG_KEY, MASK_PRG_NAME

LOGGER = logging.getLogger("bcvlm_client.egress_guard")

SECAGG_REPLY_KEYS: dict[str, str] = {
    Key.PUBLIC_KEY_1: "bytes",
    Key.PUBLIC_KEY_2: "bytes",
    Key.DESTINATION_LIST: "int_list",
    Key.CIPHERTEXT_LIST: "bytes_list",
    Key.MASKED_PARAMETERS: "bytes_list",
    Key.NODE_ID_LIST: "int_list",
    Key.SHARE_LIST: "bytes_list",
    MASK_PRG_CONFIG_KEY: "mask_prg",
}
"""SecAgg+ protocol fields (keys, ciphertexts, masked vectors) a site's reply may carry."""

STATUS_MESSAGES = frozenset({"Success"})
NUM_EXAMPLES_RECORDS = ("fitres.num_examples", "evaluateres.num_examples")


class EgressViolation(RuntimeError):
    """A reply would send something that is not on the whitelist. The message names the key, never the value."""


class SiteFailure(RuntimeError):
    """Generic error a site reports instead of its own exception text (which stays in the site log)."""


def _describe_key(key: Any) -> str:
    text = repr(key)
    return text if len(text) <= 48 else text[:45] + "...'"


def _check_scalar(record: str, key: str, value: Any, expected: type) -> None:
    if expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, expected)
    if not ok:
        raise EgressViolation(
            f"{record}[{_describe_key(key)}] has type {type(value).__name__}, expected {expected.__name__}"
        )


def _check_metrics(record: str, values: dict[str, Any], allowed: dict[str, type], n_bins: int | None) -> None:
    for key, value in values.items():
        if key not in allowed:
            raise EgressViolation(f"{record} carries a non-whitelisted metric {_describe_key(key)}")
        _check_scalar(record, key, value, allowed[key])
        if allowed[key] is bytes:
            if n_bins is None:
                raise EgressViolation(f"{record}[{key}]: histogram without a known bin count")
            try:
                decode_histogram(value, n_bins)
            except (TypeError, ValueError) as exc:
                raise EgressViolation(f"{record}[{key}] is not a {n_bins}-bin histogram: {exc}") from None


def _as_numpy(array: Any) -> np.ndarray:
    """An ArrayRecord entry as numpy (legacy Parameters carry serialised .npy bytes without dtype/shape)."""
    if getattr(array, "dtype", ""):
        return array.numpy()
    return bytes_to_ndarray(array.data)


def _check_arrays(record: str, arrays: ArrayRecord, reference: ArrayRecord | None) -> None:
    """A model reply: one packed float vector exactly as long as the packed global model the instruction carried."""
    if len(arrays) == 0:
        return
    if reference is None:
        raise EgressViolation(f"{record}: model arrays in a reply to a message that sent none")
    try:
        expected = packed_form([_as_numpy(array) for array in reference.values()])
    except PackedModelError as exc:
        raise EgressViolation(f"{record}: the instruction's model is not packed: {exc}") from None
    try:
        packed_vector([_as_numpy(array) for array in arrays.values()], expected.size)
    except PackedModelError as exc:
        raise EgressViolation(f"{record}: {exc}, as sent by the server") from None


def _check_histogram_arrays(record: str, arrays: ArrayRecord, n_bins: int | None) -> None:
    """A secure-evaluation reply: exactly the scaled histograms (positives, negatives per task, evaluation then
    validation split), no other array."""
    if len(arrays) == 0:  # the masked reply: SecAgg+ moved the values into its masked vector
        return
    if n_bins is None:
        raise EgressViolation(f"{record}: histogram arrays without a known bin count")
    if len(arrays) != SECURE_EVALUATION_ARRAYS:
        raise EgressViolation(
            f"{record}: {len(arrays)} arrays, a secure evaluation sends {SECURE_EVALUATION_ARRAYS} histograms"
        )
    for name in arrays.keys():
        sent = _as_numpy(arrays[name])
        if sent.shape != (n_bins,) or sent.dtype.kind != "f":
            raise EgressViolation(f"{record}[{_describe_key(name)}] is not a {n_bins}-bin float histogram")
        if not np.isfinite(sent).all() or (sent < 0).any() or (sent > 1).any():
            raise EgressViolation(f"{record}[{_describe_key(name)}] holds values outside [0, 1] (scaled counts)")


def _check_secagg(record: str, values: dict[str, Any]) -> None:
    for key, value in values.items():
        kind = SECAGG_REPLY_KEYS.get(key)
        if kind is None:
            raise EgressViolation(f"{record} carries a non-whitelisted SecAgg+ field {_describe_key(key)}")
        if kind == "bytes":
            ok = isinstance(value, bytes)
        elif kind == "mask_prg":
            ok = value == MASK_PRG_NAME  # a fixed protocol name, never anything of the site's
        elif kind == "bytes_list":
            ok = isinstance(value, list) and all(isinstance(item, bytes) for item in value)
        else:
            ok = isinstance(value, list) and all(isinstance(item, int) and not isinstance(item, bool) for item in value)
        if not ok:
            raise EgressViolation(f"{record}[{key}] is not {kind}")


def check_reply(reply: Message, instruction: Message) -> None:
    """Raise EgressViolation unless `reply` carries only whitelisted content for `instruction`."""
    if reply.has_error():
        return  # an error reply carries only a code and a reason (sanitised by `egress_guard_mod`)
    content: RecordDict = reply.content
    incoming = instruction.content if instruction.has_content() else RecordDict()
    n_bins = None
    for name in ("fitins.config", "evaluateins.config"):
        if name in incoming.config_records and "n-bins" in incoming.config_records[name]:
            n_bins = int(incoming.config_records[name]["n-bins"])  # type: ignore[arg-type]
    secure_evaluation = asks_secure_evaluation(incoming.config_records)
    for name, arrays in content.array_records.items():
        if name != "fitres.parameters":
            raise EgressViolation(f"reply carries a non-whitelisted array record {_describe_key(name)}")
        if secure_evaluation:
            _check_histogram_arrays(name, arrays, n_bins)
        else:
            _check_arrays(name, arrays, incoming.array_records.get("fitins.parameters"))
    for name, metrics in content.metric_records.items():
        if name in NUM_EXAMPLES_RECORDS:
            _check_metrics(name, dict(metrics), {"num_examples": int}, None)
        elif name == "evaluateres.loss":
            _check_metrics(name, dict(metrics), {"loss": float}, None)
        else:
            raise EgressViolation(f"reply carries a non-whitelisted metric record {_describe_key(name)}")
    for name, configs in content.config_records.items():
        values = dict(configs)
        if name == "fitres.metrics":
            _check_metrics(name, values, SECURE_EVALUATION_METRICS if secure_evaluation else FIT_METRICS, n_bins)
        elif name == "evaluateres.metrics":
            _check_metrics(name, values, EVALUATE_METRICS, n_bins)
        elif name in ("fitres.status", "evaluateres.status"):
            _check_metrics(name, {k: v for k, v in values.items() if k != "message"}, {"code": int}, None)
            if values.get("message") not in STATUS_MESSAGES:
                raise EgressViolation(f"{name} carries a free-text status message")
        elif name == RECORD_KEY_CONFIGS:
            _check_secagg(name, values)
        else:
            raise EgressViolation(f"reply carries a non-whitelisted config record {_describe_key(name)}")


def egress_guard_mod(msg: Message, context: Context, call_next: Callable[[Message, Context], Message]) -> Message:
    """ClientApp mod: check every reply; replace exceptions with a generic `SiteFailure` (details stay local)."""
    try:
        reply = call_next(msg, context)
        check_reply(reply, msg)
        return reply
    except SiteFailure:
        raise
    except Exception as exc:  # noqa: BLE001 - the text of `exc` must not leave the site
        LOGGER.exception("site reply blocked or site failed while handling '%s'", msg.metadata.message_type)
        raise SiteFailure(f"site failed ({type(exc).__name__}); details are in the site's log") from None
