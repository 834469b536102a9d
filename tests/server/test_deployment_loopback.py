"""A real loopback deployment survives intruders, a site over budget, a crash of the whole center with a resume,
and a site killed while it trains (the scenario: bcvlm_testing.loopback_scenario)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from bcvlm_client.reply_schema import DeclineReason
from bcvlm_model.atomic_io import read_json
from bcvlm_model.checkpoint import load_checkpoint
from bcvlm_server.server_app import default_model_factory, trainable_arrays
from bcvlm_server.server_config import load_server_config
from bcvlm_testing.loopback import TINY_FEDERATION
from bcvlm_testing.loopback_scenario import KILLED, SITES, SPENT, TRAINING_SITES, ObservedDeployment, file_sha256

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]
# The timeout is a hang guard for a loaded machine; on 2 idle cores the federation takes about 3 to 4 minutes.


def test_run_completes_all_rounds_after_the_resume(deployment: ObservedDeployment) -> None:
    assert deployment.crashed_code != 0  # it was killed
    assert deployment.resumed_code == 0, deployment.fed.output("server.out")[-3000:]
    assert deployment.fed.completed_rounds() == 2
    runs: list[dict[str, Any]] = read_json(deployment.fed.run_dir / "flower_runs.json")
    submitted = [entry for entry in runs if "submitted_at" in entry]
    assert [entry["resume"] for entry in submitted] == [False, True]
    assert submitted[1]["last_completed_round_at_submit"] == 1
    assert deployment.fed.output("server.out").count("already registered") == len(SITES)  # the resume kept the keys
    assert "finished:completed" in (deployment.fed.run_dir / "logs" / "deployment.log").read_text()


def test_global_weights_changed_and_stay_finite(deployment: ObservedDeployment) -> None:
    run_dir = deployment.fed.run_dir
    cfg = load_server_config(run_dir / "server_config.yaml")
    torch.manual_seed(cfg.seed)  # what the ServerApp does before building its initial model
    initial = trainable_arrays(default_model_factory(cfg))
    rounds = [
        trainable_arrays(load_checkpoint(run_dir / "rounds" / f"round-{r:04d}" / "checkpoint").model) for r in (1, 2)
    ]
    for arrays in rounds:
        assert len(arrays) == len(initial)
        assert all(np.isfinite(a).all() for a in arrays)
    assert any(not np.array_equal(a, b) for a, b in zip(initial, rounds[0]))
    assert any(not np.array_equal(a, b) for a, b in zip(rounds[0], rounds[1]))


def test_round_2_starts_bit_for_bit_from_the_round_1_checkpoint(deployment: ObservedDeployment) -> None:
    checkpoint = deployment.fed.run_dir / "rounds" / "round-0001" / "checkpoint"
    assert file_sha256(checkpoint / "model.safetensors") == deployment.checkpoint_1_sha  # not rewritten by the resume
    assert deployment.fed.round_metrics(2).round == 2
    # The round record holds no hash of the starting arrays: the ServerApp says it resumed from that checkpoint.
    log = (deployment.fed.run_dir / "logs" / "server.log").read_text()
    assert f"resuming after round 1 of 2 from {checkpoint}" in log


def test_every_training_site_ledger_spent_epsilon_on_disk_and_monotonic(deployment: ObservedDeployment) -> None:
    target = deployment.fed.site_privacy["target_epsilon"]
    for site in TRAINING_SITES:
        ledger = deployment.fed.ledger(site)
        assert 0.0 < deployment.epsilon_after_round_1[site] <= deployment.epsilon_after_crash[site]
        assert deployment.epsilon_after_crash[site] <= ledger["epsilon_spent"] <= target + 1e-6, site
        assert 1 in [entry["round"] for entry in ledger["entries"] if entry["kind"] == "trained"], site
    # Alive in round 2: trained again after the resume, so their ledgers grew across the crash.
    grown = [
        site for site in ("alpha", "beta") if deployment.ledger_epsilon(site) > deployment.epsilon_after_round_1[site]
    ]
    assert grown, "no live site trained in round 2"
    nodes = deployment.node_ids()
    reported = deployment.fed.round_metrics(1).epsilon
    for site in TRAINING_SITES:
        if nodes[site] in reported:
            assert reported[nodes[site]] == pytest.approx(deployment.epsilon_after_round_1[site], rel=1e-6)


def test_site_over_budget_declines_and_the_run_goes_on(deployment: ObservedDeployment) -> None:
    assert deployment.ledger_epsilon(SPENT) == pytest.approx(deployment.spent_epsilon_before, rel=1e-9)
    ledger_rounds = [entry for entry in deployment.fed.ledger(SPENT)["entries"] if entry["kind"] != "open"]
    assert {entry["kind"] for entry in ledger_rounds if entry["round"] >= 1} == {"declined"}
    assert 1 in [entry["round"] for entry in ledger_rounds]
    fit = deployment.fed.round_metrics(1).fit
    spent_reply = fit.sites[deployment.node_ids()[SPENT]]
    assert spent_reply.declined == DeclineReason.BUDGET_EXHAUSTED and spent_reply.num_examples == 0
    assert fit.accepted >= 1 and fit.outcome.startswith("updated")
    assert "declines to train" in (deployment.fed.state_dir(SPENT) / "logs" / "site.log").read_text()


def test_pooled_auc_is_reported(deployment: ObservedDeployment) -> None:
    pooled = deployment.fed.round_metrics(1).evaluate.pooled
    aucs = [entry.auc for entry in pooled.values() if entry.auc is not None]
    assert aucs, pooled
    assert all(0.0 <= auc <= 1.0 for auc in aucs)
    assert pooled["malignancy"].n_sites >= 2
    assert sum(pooled["malignancy"].histogram.positives) > 0


def test_killed_site_does_not_hang_the_round(deployment: ObservedDeployment) -> None:
    fit = deployment.fed.round_metrics(2).fit
    nodes = deployment.node_ids()
    assert nodes[KILLED] not in fit.sites, fit  # dead: no reply
    assert fit.accepted >= 1 and fit.outcome.startswith("updated"), fit
    assert set(fit.sites) <= {nodes[site] for site in SITES}
    bound = TINY_FEDERATION["secagg"]["timeout_s"] + TINY_FEDERATION["round_timeout_s"] + 300.0
    assert deployment.finished_at - deployment.killed_at < bound


def test_every_task_starts_with_torch_and_the_model_code_already_loaded(deployment: ObservedDeployment) -> None:
    # Each message runs in a process forked from the site's forkserver (bcvlm_client.site_superexec), which imported
    # torch and the model code once: no task imports them itself, the SecAgg+ key stages included.
    tasks = [task for site in TRAINING_SITES for task in deployment.fed.task_timings(site)]
    stages = {task["stage"] for task in tasks}
    assert {"setup", "share_keys", "collect_masked_vectors", "unmask"} <= stages, stages
    # A fresh interpreter would not have it: the ClientApp module imports torch only to train or evaluate
    # (tests/client/test_client_app.py).
    assert [task for task in tasks if not task["torch_before"]] == []


def test_unregistered_site_key_is_refused(deployment: ObservedDeployment) -> None:
    assert deployment.rogue_code not in (None, 0)
    assert "No SuperNode found with the given public key" in deployment.superlink_log()


def test_site_without_the_ca_is_refused(deployment: ObservedDeployment) -> None:
    assert deployment.wrong_ca_code not in (None, 0)
    log = (deployment.fed.state_dir("wrong_ca") / "logs" / "supernode.log").read_text(errors="replace")
    assert "CERTIFICATE_VERIFY_FAILED" in log or "certificate verify failed" in log.lower()
    activated = {
        line.split("node_id=")[1].split()[0]
        for line in deployment.superlink_log().splitlines()
        if "Activated node_id=" in line
    }
    assert len(activated) == len(SITES), activated
