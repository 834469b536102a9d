"""Site outcomes: only a bounded class name of a site's error text is kept; a round below the quorum failed."""

from __future__ import annotations

from flwr.common.constant import ErrorCode

from bcvlm_server.round_outcomes import decline_reason_name, fit_reply_outcome, round_failure, scrub_error


def test_scrub_keeps_the_class_the_egress_guard_names_and_nothing_else() -> None:
    reason = "<class 'bcvlm_client.egress_guard.SiteFailure'>:<'site failed (DicomRejected); details are in the log'>"
    assert scrub_error(ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason) == (
        "DicomRejected",
        "the site's ClientApp raised an error (details in the site's site.log)",
    )


def test_scrub_drops_free_text_of_an_unguarded_exception() -> None:
    error_class, reason = scrub_error(2, "<class 'OSError'>:<'/pacs/patient-4711.dcm: file not found'>")
    assert error_class == "OSError" and "4711" not in reason


def test_scrub_of_unparseable_text_names_no_class_from_it() -> None:
    assert scrub_error(99, "patient 4711 (Jane Doe) crashed") == ("SiteError", "Flower error code 99")


def test_a_declined_reply_carries_its_code() -> None:
    outcome = fit_reply_outcome({"declined": 3, "num_examples": 0})
    assert outcome["outcome"] == "declined" and outcome["code"] == 3
    assert outcome["reason"] == decline_reason_name(3) != ""


def test_a_round_below_the_quorum_failed_and_names_the_others() -> None:
    outcomes = {"1": {"outcome": "trained"}, "2": {"outcome": "failed", "error": "OSError", "reason": "x"}}
    assert round_failure(2, 2, "updated from 2 sites", outcomes, {}) is None
    failure = round_failure(1, 2, "unchanged: 1 site(s) trained, fewer than min_sites 2", outcomes, {"2": "beta"})
    assert failure is not None and failure.startswith("1 site(s) trained, min_sites 2")
    assert "beta failed (OSError: x)" in failure
