"""FederatedStrategy over the real Server/ClientApps (InProcessGrid): failed rounds, per-site outcomes, quorum waits."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from flwr.app import Message

from bcvlm_server.run_records import RunRecords
from bcvlm_testing.federation_sites import FailingTrainer, is_evaluation, make_site, run_inprocess


@pytest.mark.parametrize("secagg", [True, False], ids=["secagg", "plain"])
def test_round_where_every_site_fails_is_failed_with_scrubbed_reasons(tmp_path: Path, secagg: bool) -> None:
    sites = {100 + k: make_site(tmp_path, f"site{k}", n_train=4, n_test=4, seed=k) for k in range(2)}
    run_inprocess(
        tmp_path,
        sites,
        "server",
        trainer_factory=FailingTrainer,
        **{"secagg.enabled": secagg, "rounds": 1, "min_sites": 2},
    )
    records = RunRecords(tmp_path / "run")
    metrics = records.load_metrics(1)
    assert metrics["status"] == "failed"
    assert metrics["failure"].startswith("0 site(s) trained, min_sites 2")
    assert set(metrics["site_outcomes"]) == {"100", "101"}
    for outcome in metrics["site_outcomes"].values():
        assert outcome["outcome"] == "failed"
        assert outcome["error"] == "OSError"
        assert "ClientApp raised" in outcome["reason"]
        assert outcome["evaluate"].startswith("failed (OSError")
    text = records.metrics_path(1).read_text()
    assert "patient-4711" not in text and "file not found" not in text  # the site's exception text stays there
    log = records.log_path.read_text()
    assert "round 1 FAILED" in log and "site node 100: failed (OSError" in log


def test_a_site_lost_before_evaluation_costs_one_timeout_and_the_round_is_checkpointed(tmp_path: Path) -> None:
    timeout = 30.0
    sites = {100 + k: make_site(tmp_path, f"site{k}", n_train=4, n_test=4, seed=k) for k in range(3)}
    victim = 102
    departed: set[int] = set()

    def killed_at_evaluation(message: Message) -> bool:
        if message.metadata.dst_node_id == victim and is_evaluation(message):
            departed.add(victim)  # it dies on receipt; from now on the SuperLink no longer lists it
        return message.metadata.dst_node_id in departed

    started = time.monotonic()
    _, _, grid = run_inprocess(
        tmp_path,
        sites,
        "server",
        silent=killed_at_evaluation,
        wait_for_silent=True,
        departed=departed,
        **{
            "secagg.enabled": True,
            "rounds": 2,
            "min_sites": 2,
            "round_timeout_s": timeout,
            "local_train.local_steps": 1,
        },
    )
    elapsed = time.monotonic() - started
    records = RunRecords(tmp_path / "run")
    assert records.last_completed_round() == 2
    assert records.checkpoint_dir(1).is_dir()
    first, second = records.load_metrics(1), records.load_metrics(2)
    assert first["status"] == "trained" and first["site_outcomes"][str(victim)]["outcome"] == "trained"
    assert first["site_outcomes"][str(victim)]["evaluate"].startswith("failed (TimeoutError")
    assert second["status"] == "trained" and str(victim) not in second["site_outcomes"]
    assert grid.waited_s == timeout  # the transport waited for the dead site exactly once
    # Nothing else waited: a second wait would add a whole timeout; the rest is the sites' work plus the server's own
    # (models, checkpoints, two SecAgg+ passes per round: training and secure evaluation).
    assert elapsed - grid.client_seconds - grid.waited_s < timeout


def test_a_missing_quorum_fails_the_round_after_one_timeout(tmp_path: Path) -> None:
    timeout = 20.0
    sites = {100 + k: make_site(tmp_path, f"site{k}", n_train=4, n_test=4, seed=k) for k in range(3)}
    departed = {102}  # never online: 2 of the 3 sites the quorum asks for
    started = time.monotonic()
    _, _, grid = run_inprocess(
        tmp_path,
        sites,
        "server",
        wait_for_silent=True,
        departed=departed,
        **{"secagg.enabled": False, "rounds": 1, "min_sites": 3, "round_timeout_s": timeout},
    )
    elapsed = time.monotonic() - started
    metrics = RunRecords(tmp_path / "run").load_metrics(1)
    assert metrics["status"] == "failed"
    assert "2 of min 3 sites connected" in metrics["failure"]
    assert all(outcome["evaluate"] == "ok" for outcome in metrics["site_outcomes"].values())  # evaluated anyway
    assert timeout <= elapsed - grid.client_seconds < 1.5 * timeout  # one wait for the quorum, not a day
