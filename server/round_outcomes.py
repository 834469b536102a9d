"""Per-site round outcomes (trained / declined / rejected / failed / dropped) and whether a round counts as failed.

A site's error reply carries text the site chose; only a bounded exception class name is taken from it (the site's
egress guard already reduces it to `site failed (ClassName)`), and the short reason is the server's own wording.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from flwr.common.constant import ErrorCode

from bcvlm_client.reply_schema import DeclineReason

TRAINED, DECLINED, REJECTED, FAILED, DROPPED = "trained", "declined", "rejected", "failed", "dropped"

_SITE_FAILURE = re.compile(r"site failed \(([A-Za-z_][A-Za-z0-9_]{0,63})\)")
_CLASS_NAME = re.compile(r"^<class '(?:[A-Za-z_][A-Za-z0-9_]*\.){0,16}([A-Za-z_][A-Za-z0-9_]{0,63})'>")

ERROR_REASONS: dict[int, str] = {
    ErrorCode.LOAD_CLIENT_APP_EXCEPTION: "the site could not load the ClientApp (bcvlm not installed or another version)",
    ErrorCode.CLIENT_APP_RAISED_EXCEPTION: "the site's ClientApp raised an error (details in the site's site.log)",
    ErrorCode.MESSAGE_UNAVAILABLE: "the instruction expired before the site fetched it",
    ErrorCode.REPLY_MESSAGE_UNAVAILABLE: "the site's reply was lost or expired",
    ErrorCode.NODE_UNAVAILABLE: "the site went offline",
    ErrorCode.MOD_FAILED_PRECONDITION: "a ClientApp mod refused the instruction",
    ErrorCode.INVALID_FAB: "the site refused the app bundle",
    ErrorCode.CLIENT_APP_CRASHED: "the site's ClientApp process crashed",
}
"""The server's own short reason per Flower error code (never the site's exception text)."""


def scrub_error(code: int, reason: str) -> tuple[str, str]:
    """(error class, short reason) of a site's error reply; nothing of the free text passes but a class name."""
    match = _SITE_FAILURE.search(reason or "") or _CLASS_NAME.match(reason or "")
    error_class = match.group(1) if match else "SiteError"
    return error_class, ERROR_REASONS.get(int(code), f"Flower error code {int(code)}")


def decline_reason_name(code: int) -> str:
    """The `DeclineReason` name of a fit reply's `declined` code (a code this version does not know: its number)."""
    try:
        return DeclineReason(int(code)).name
    except ValueError:
        return f"code {int(code)}"


def fit_reply_outcome(entry: Mapping[str, Any]) -> dict[str, Any]:
    """Outcome of a site that sent a fit reply (an entry of metrics.json `fit.sites`)."""
    declined = int(entry.get("declined", 0) or 0)
    if declined:
        return {"outcome": DECLINED, "code": declined, "reason": decline_reason_name(declined)}
    if entry.get("rejected"):
        return {"outcome": REJECTED, "reason": str(entry["rejected"])}
    if int(entry.get("num_examples", 0)) <= 0:
        return {"outcome": DECLINED, "code": 0, "reason": "replied without training examples"}
    return {"outcome": TRAINED}


def missing_reply_outcome(reply: Mapping[str, Any] | None, stage_outcome: str) -> dict[str, Any]:
    """Outcome of a site that was sent fit instructions but whose reply did not reach aggregation."""
    if reply is None:
        return {"outcome": DROPPED, "reason": f"no update aggregated ({stage_outcome})"}
    if reply["state"] == "error":
        return {"outcome": FAILED, "error": reply["error"], "reason": reply["reason"]}
    if reply["state"] == "no_reply":
        return {"outcome": FAILED, "error": "TimeoutError", "reason": reply["reason"]}
    return {"outcome": DROPPED, "reason": f"replied, but its update was not aggregated ({stage_outcome})"}


def describe_outcome(outcome: Mapping[str, Any]) -> str:
    """One short phrase: `trained`, `declined (BUDGET_EXHAUSTED)`, `failed (DicomRejected: ...)`."""
    kind = str(outcome.get("outcome", "?"))
    if kind == TRAINED:
        return TRAINED
    if kind == FAILED:
        return f"{kind} ({outcome.get('error', 'SiteError')}: {outcome.get('reason', '')})"
    return f"{kind} ({outcome.get('reason', '')})"


def round_failure(
    trained: int, min_sites: int, fit_outcome: str, outcomes: Mapping[str, Mapping[str, Any]], names: Mapping[str, str]
) -> str | None:
    """Why a round failed (None when the global model was updated from at least `min_sites` sites)."""
    if trained >= min_sites and fit_outcome.startswith("updated"):
        return None
    others = [
        f"{names.get(node, 'node ' + node)} {describe_outcome(outcome)}"
        for node, outcome in sorted(outcomes.items())
        if outcome.get("outcome") != TRAINED
    ]
    head = f"{trained} site(s) trained, min_sites {min_sites}; global model {fit_outcome}"
    return head + (": " + "; ".join(others) if others else "")
