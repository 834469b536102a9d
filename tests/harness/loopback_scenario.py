"""The loopback deployment scenario that tests/server/test_deployment_loopback.py and test_fleet_gateway.py observe:
a real TLS + SuperNode-auth `bcvlm-server` (loopback SuperLink, SuperExec, public Fleet gateway), four
`bcvlm-client` sites on synthetic data, 2 rounds of DP-SGD + SecAgg+ on a tiny model configuration.

One federation serves both modules (it is the slowest thing in the suite; a second one for the gateway's probes cost
about 55 CPU-s), and it goes through everything a deployment must survive, in this order:
- two intruders try to join and must be refused: a site whose key was never registered, and a site (holding a
  registered key) that does not have the federation's CA certificate;
- site `spent` starts with its privacy budget already used up (charged through its real ledger): it declines;
- once the run is submitted, the public address and the loopback SuperLink are probed (`gateway_probes`);
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

import yaml

from bcvlm_client.flower_process import free_port
from bcvlm_client.privacy_ledger import SitePrivacyLedger
from bcvlm_model.atomic_io import read_json
from bcvlm_model.privacy.accounting import noise_multiplier_for_remaining_budget
from bcvlm_server.deployment import RunDirectory
from bcvlm_server.run_records import RunRecords
from bcvlm_testing.gateway_probes import GatewayProbes, probe_gateway
from bcvlm_testing.loopback import TINY_FEDERATION, LoopbackError, LoopbackFederation, wait_until

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


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class ObservedDeployment:
    """What the scenario saw; the federation's files (run, ledgers, logs) stay in `fed.root`."""

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
    gateway: GatewayProbes

    @property
    def run_directory(self) -> RunDirectory:
        """The center's deployment files (`bcvlm_server.deployment`)."""
        return RunDirectory(self.fed.run_dir)

    def superlink_log(self) -> str:
        return (self.run_directory.logs / "superlink.log").read_text(errors="replace")

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
    log = (RunDirectory(fed.run_dir).logs / "server.log").read_text(errors="replace")
    return "resuming after round 1" in log and "round 2: training on" in log.split("resuming after round 1")[-1]


def observe_loopback_deployment(root: Path) -> ObservedDeployment:
    """Run the scenario in `root`; every process it started is stopped when it returns."""
    # Threshold 2 of 4 shares: the round survives the killed site plus one site that misses a stage.
    federation = {**TINY_FEDERATION, "secagg": {**TINY_FEDERATION["secagg"], "reconstruction_threshold": 0.5}}
    fed = LoopbackFederation(root, SITES, federation, n_patients=32)
    layout = RunDirectory(fed.run_dir)
    internal_port = free_port()
    raw = yaml.safe_load(fed.server_yaml.read_text())
    raw["superlink"]["internal_port"] = internal_port  # a known port for the probes (the resume keeps it)
    fed.server_yaml.write_text(yaml.safe_dump(raw))
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
        fed.ensure_running(server, "bcvlm-server")
        clients = fed.start_sites()
        wait_until(
            lambda: layout.flower_runs.is_file() or server.poll() is not None,
            600,
            "the run to be submitted",
        )
        fed.ensure_running(server, "bcvlm-server")
        gateway = probe_gateway(
            fed.root,
            fed.port,
            internal_port,
            fed.certs.ca_cert,
            int(read_json(layout.flower_runs)[0]["run_id"]),
            layout.app_dir,
            layout.run_config,
            fed.site_keys["rogue"].public_key,
        )

        # Round 1, then a crash of the whole coordinating center (SuperLink, SuperExec, ServerApp, our CLI).
        wait_until(lambda: fed.completed_rounds() >= 1 or server.poll() is not None, 900, "round 1")
        fed.ensure_running(server, "bcvlm-server")
        after_round_1 = {site: fed.ledger(site)["epsilon_spent"] for site in SITES}
        fed.kill(server)
        after_crash = {site: fed.ledger(site)["epsilon_spent"] for site in SITES}
        checkpoint_sha = file_sha256(RunRecords(fed.run_dir).checkpoint_dir(1) / "model.safetensors")

        # Resume; once the killed site has received round 2's SecAgg+ stage-2 (train) message, it dies.
        old_runs = set(_run_ids(fed.output(f"state/{KILLED}/logs/supernode.log")))
        resumed = fed.start_server("--resume", str(fed.run_dir))
        wait_until(
            lambda: _train_messages_of_new_runs(fed, KILLED, old_runs) >= 3 or resumed.poll() is not None,
            900,
            f"site {KILLED} to receive its round-2 training message after the resume",
            poll_s=0.1,
        )
        fed.ensure_running(resumed, "the resumed bcvlm-server")
        if not _round_2_started_after_resume(fed):
            raise LoopbackError("round 2 did not start after the resume:\n" + fed.output("server.out")[-3000:])
        fed.kill(clients[KILLED])
        killed_at = time.monotonic()
        resumed_code = resumed.wait(timeout=900)
        finished_at = time.monotonic()
        return ObservedDeployment(
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
            gateway=gateway,
        )
    finally:
        fed.stop_all()
