"""Loopback deployment: a real TLS + SuperNode-auth SuperLink, four `bcvlm-client` sites on synthetic data, 2 rounds
of DP-SGD + SecAgg+ on a tiny model configuration.

One federation is shared by these tests (it is the slowest thing in the suite), and it goes through everything a
deployment must survive, in this order:
- two intruders try to join and must be refused: a site whose key was never registered, and a site (holding a
  registered key) that does not have the federation's CA certificate;
- site `spent` starts with its privacy budget already used up (charged through its real ledger): it declines;
- after round 1 the whole server process tree is SIGKILLed, then `bcvlm-server --resume RUN_DIR` continues;
- during round 2 site `gamma` is SIGKILLed while it trains (SecAgg+ stage 2, after the key exchange): the round must
  complete with the others within a bounded time. (A site lost before the key exchange breaks the round in
  Flower 1.42's SecAggPlusWorkflow: it asks the survivors for key shares they never received.)
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bcvlm_client.privacy_ledger import SitePrivacyLedger
from bcvlm_client.reply_schema import DeclineReason
from bcvlm_model.atomic_io import read_json
from bcvlm_model.checkpoint import load_checkpoint
from bcvlm_model.privacy.accounting import noise_multiplier_for_remaining_budget
from bcvlm_server.server_app import default_model_factory, trainable_arrays
from bcvlm_server.server_config import load_server_config
from bcvlm_testing.loopback import TINY_FEDERATION, LoopbackFederation, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]
# The timeout is a hang guard for a loaded machine; on 2 idle cores the federation takes about 3 to 4 minutes.

SITES = ("alpha", "beta", "gamma", "spent")
TRAINING_SITES = ("alpha", "beta", "gamma")
KILLED = "gamma"
SPENT = "spent"


def spend_budget(fed: LoopbackFederation, site: str) -> float:
    """Charge a site's real ledger with an earlier DP-SGD step that spends (all but 1e-9 of) its budget."""
    terms = SitePrivacyLedger.open(fed.state_dir(site)).terms
    with SitePrivacyLedger.locked(fed.state_dir(site), terms) as ledger:
        sigma = noise_multiplier_for_remaining_budget(
            None, terms.target_epsilon, terms.delta, 1.0, 1, relative_tolerance=1e-9
        )
        ledger.charge_round(0, 0, noise_multiplier=sigma, sample_rate=1.0, steps=1)
        return ledger.epsilon_spent


def arrays_sha256(arrays: list[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array, dtype="<f4").tobytes())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Observed:
    fed: LoopbackFederation
    crashed_code: int
    resumed_code: int
    killed_at: float
    finished_at: float
    rogue_code: int | None
    wrong_ca_code: int | None
    spent_epsilon_before: float
    epsilon_after_round_1: dict[str, float]
    epsilon_after_crash: dict[str, float]
    checkpoint_1_sha: str
    checkpoint_1_arrays_sha: str

    def superlink_log(self) -> str:
        return (self.fed.run_dir / "logs" / "superlink.log").read_text(errors="replace")

    def ledger_epsilon(self, site: str) -> float:
        return float(self.fed.ledger(site)["epsilon_spent"])

    def node_ids(self) -> dict[str, str]:
        """Site name -> Flower node id, from `bcvlm-server`'s registration lines."""
        found = re.findall(r"site '([^']+)': registered as node (\d+)", self.fed.output("server.out"))
        return dict(found)


def _run_ids(text: str) -> list[str]:
    return re.findall(r"\[RUN (\d+), ROUND \d+\]", text)


def _train_messages_of_new_runs(fed: LoopbackFederation, site: str, old_runs: set[str]) -> int:
    """How many train messages the site's SuperNode received for Flower runs not in `old_runs` (from its log).

    Under SecAgg+ a round sends each site three train messages before the unmasking one: stage 0 (keys),
    stage 1 (key shares) and stage 2 (train, then upload the masked update). The SuperNode logs the receipt
    before it starts the `flwr-clientapp` process; that process then imports torch, builds the model and trains,
    which leaves seconds for a kill, while the SecAgg+ mod's own "starting stage 2" line comes only after
    training, a fraction of a second before the upload.
    """
    count = 0
    run = ""
    for line in fed.output(f"state/{site}/logs/supernode.log").splitlines():
        header = _run_ids(line)
        if header:
            run = header[0]
        elif "Receiving: train message" in line and run and run not in old_runs:
            count += 1
    return count


def _round_2_started_after_resume(fed: LoopbackFederation) -> bool:
    log = (fed.run_dir / "logs" / "server.log").read_text(errors="replace")
    return "resuming after round 1" in log and "round 2: training on" in log.split("resuming after round 1")[-1]


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Observed:
    # Threshold 2 of 4 shares: the round survives the killed site plus one site that misses a stage.
    federation = {**TINY_FEDERATION, "secagg": {**TINY_FEDERATION["secagg"], "reconstruction_threshold": 0.5}}
    fed = LoopbackFederation(tmp_path_factory.mktemp("loopback"), SITES, federation, n_patients=32)
    spent_before = spend_budget(fed, SPENT)
    try:
        # The intruders go first and must be refused by the running center before the sites join: started beside
        # the sites, a starved intruder could reach the public port only after the crash below (connection refused).
        server = fed.start_center()
        rogue = fed.start_client(fed.intruder_yaml("rogue", key_site="rogue"), "--max-restarts", "0")
        wrong_ca = fed.start_client(
            fed.intruder_yaml("wrong_ca", key_site="alpha", ca_cert=fed.other_ca.ca_cert),
            "--max-restarts",
            "0",
            "--max-retries",
            "2",
            "--max-wait-time",
            "60",
        )
        wait_until(lambda: rogue.poll() is not None and wrong_ca.poll() is not None, 240, "the intruders to give up")
        assert server.poll() is None, f"server ended early:\n{fed.output('server.out')[-3000:]}"
        clients = fed.start_sites()

        # Round 1, then a crash of the whole coordinating center (SuperLink, SuperExec, ServerApp, our CLI).
        wait_until(lambda: fed.completed_rounds() >= 1 or server.poll() is not None, 900, "round 1")
        assert server.poll() is None, f"server ended early:\n{fed.output('server.out')[-3000:]}"
        after_round_1 = {site: fed.ledger(site)["epsilon_spent"] for site in SITES}
        fed.kill(server)
        after_crash = {site: fed.ledger(site)["epsilon_spent"] for site in SITES}
        checkpoint = fed.run_dir / "rounds" / "round-0001" / "checkpoint"
        checkpoint_sha = file_sha256(checkpoint / "model.safetensors")
        arrays_sha = arrays_sha256(trainable_arrays(load_checkpoint(checkpoint).model))

        # Resume; once the killed site has received round 2's SecAgg+ stage-2 (train) message, it dies.
        old_runs = set(_run_ids(fed.output(f"state/{KILLED}/logs/supernode.log")))
        resumed = fed.start_server("--resume", str(fed.run_dir))
        wait_until(
            lambda: _train_messages_of_new_runs(fed, KILLED, old_runs) >= 3 or resumed.poll() is not None,
            900,
            f"site {KILLED} to receive its round-2 training message after the resume",
            poll_s=0.1,
        )
        assert resumed.poll() is None, f"resumed server ended early:\n{fed.output('server.out')[-3000:]}"
        assert _round_2_started_after_resume(fed)
        fed.kill(clients[KILLED])
        killed_at = time.monotonic()
        resumed_code = resumed.wait(timeout=900)
        finished_at = time.monotonic()
        return Observed(
            fed=fed,
            crashed_code=server.returncode,
            resumed_code=resumed_code,
            killed_at=killed_at,
            finished_at=finished_at,
            rogue_code=rogue.returncode,
            wrong_ca_code=wrong_ca.returncode,
            spent_epsilon_before=spent_before,
            epsilon_after_round_1=after_round_1,
            epsilon_after_crash=after_crash,
            checkpoint_1_sha=checkpoint_sha,
            checkpoint_1_arrays_sha=arrays_sha,
        )
    finally:
        fed.stop_all()


def test_run_completes_all_rounds_after_the_resume(observed: Observed) -> None:
    assert observed.crashed_code != 0  # it was killed
    assert observed.resumed_code == 0, observed.fed.output("server.out")[-3000:]
    assert observed.fed.completed_rounds() == 2
    runs: list[dict[str, Any]] = read_json(observed.fed.run_dir / "flower_runs.json")
    submitted = [entry for entry in runs if "submitted_at" in entry]
    assert [entry["resume"] for entry in submitted] == [False, True]
    assert submitted[1]["last_completed_round_at_submit"] == 1
    assert observed.fed.output("server.out").count("already registered") == len(SITES)  # the resume kept the keys
    assert "finished:completed" in (observed.fed.run_dir / "logs" / "deployment.log").read_text()


def test_global_weights_changed_and_stay_finite(observed: Observed) -> None:
    run_dir = observed.fed.run_dir
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


def test_round_2_starts_bit_for_bit_from_the_round_1_checkpoint(observed: Observed) -> None:
    checkpoint = observed.fed.run_dir / "rounds" / "round-0001" / "checkpoint"
    assert file_sha256(checkpoint / "model.safetensors") == observed.checkpoint_1_sha  # not rewritten by the resume
    assert observed.fed.round_metrics(2).round == 2
    # The round record holds no hash of the starting arrays: the ServerApp says it resumed from that checkpoint.
    log = (observed.fed.run_dir / "logs" / "server.log").read_text()
    assert f"resuming after round 1 of 2 from {checkpoint}" in log


def test_every_training_site_ledger_spent_epsilon_on_disk_and_monotonic(observed: Observed) -> None:
    target = observed.fed.site_privacy["target_epsilon"]
    for site in TRAINING_SITES:
        ledger = observed.fed.ledger(site)
        assert 0.0 < observed.epsilon_after_round_1[site] <= observed.epsilon_after_crash[site]
        assert observed.epsilon_after_crash[site] <= ledger["epsilon_spent"] <= target + 1e-6, site
        assert 1 in [entry["round"] for entry in ledger["entries"] if entry["kind"] == "trained"], site
    # Alive in round 2: trained again after the resume, so their ledgers grew across the crash.
    grown = [site for site in ("alpha", "beta") if observed.ledger_epsilon(site) > observed.epsilon_after_round_1[site]]
    assert grown, "no live site trained in round 2"
    nodes = observed.node_ids()
    reported = observed.fed.round_metrics(1).epsilon
    for site in TRAINING_SITES:
        if nodes[site] in reported:
            assert reported[nodes[site]] == pytest.approx(observed.epsilon_after_round_1[site], rel=1e-6)


def test_site_over_budget_declines_and_the_run_goes_on(observed: Observed) -> None:
    assert observed.ledger_epsilon(SPENT) == pytest.approx(observed.spent_epsilon_before, rel=1e-9)
    ledger_rounds = [entry for entry in observed.fed.ledger(SPENT)["entries"] if entry["kind"] != "open"]
    assert {entry["kind"] for entry in ledger_rounds if entry["round"] >= 1} == {"declined"}
    assert 1 in [entry["round"] for entry in ledger_rounds]
    fit = observed.fed.round_metrics(1).fit
    spent_reply = fit.sites[observed.node_ids()[SPENT]]
    assert spent_reply.declined == DeclineReason.BUDGET_EXHAUSTED and spent_reply.num_examples == 0
    assert fit.accepted >= 1 and fit.outcome.startswith("updated")
    assert "declines to train" in (observed.fed.state_dir(SPENT) / "logs" / "site.log").read_text()


def test_pooled_auc_is_reported(observed: Observed) -> None:
    pooled = observed.fed.round_metrics(1).evaluate.pooled
    aucs = [entry.auc for entry in pooled.values() if entry.auc is not None]
    assert aucs, pooled
    assert all(0.0 <= auc <= 1.0 for auc in aucs)
    assert pooled["malignancy"].n_sites >= 2
    assert sum(pooled["malignancy"].histogram.positives) > 0


def test_killed_site_does_not_hang_the_round(observed: Observed) -> None:
    fit = observed.fed.round_metrics(2).fit
    nodes = observed.node_ids()
    assert nodes[KILLED] not in fit.sites, fit  # dead: no reply
    assert fit.accepted >= 1 and fit.outcome.startswith("updated"), fit
    assert set(fit.sites) <= {nodes[site] for site in SITES}
    bound = TINY_FEDERATION["secagg"]["timeout_s"] + TINY_FEDERATION["round_timeout_s"] + 300.0
    assert observed.finished_at - observed.killed_at < bound


def test_every_task_starts_with_torch_and_the_model_code_already_loaded(observed: Observed) -> None:
    # Each message runs in a process forked from the site's forkserver (bcvlm_client.site_superexec), which imported
    # torch and the model code once: no task imports them itself, the SecAgg+ key stages included.
    tasks = [task for site in TRAINING_SITES for task in observed.fed.task_timings(site)]
    stages = {task["stage"] for task in tasks}
    assert {"setup", "share_keys", "collect_masked_vectors", "unmask"} <= stages, stages
    # A fresh interpreter would not have it: the ClientApp module imports torch only to train or evaluate
    # (tests/client/test_client_app.py).
    assert [task for task in tasks if not task["torch_before"]] == []


def test_unregistered_site_key_is_refused(observed: Observed) -> None:
    assert observed.rogue_code not in (None, 0)
    assert "No SuperNode found with the given public key" in observed.superlink_log()


def test_site_without_the_ca_is_refused(observed: Observed) -> None:
    assert observed.wrong_ca_code not in (None, 0)
    log = (observed.fed.state_dir("wrong_ca") / "logs" / "supernode.log").read_text(errors="replace")
    assert "CERTIFICATE_VERIFY_FAILED" in log or "certificate verify failed" in log.lower()
    activated = {
        line.split("node_id=")[1].split()[0]
        for line in observed.superlink_log().splitlines()
        if "Activated node_id=" in line
    }
    assert len(activated) == len(SITES), activated
