"""FederatedStrategy over the real Server/ClientApps (InProcessGrid): failed rounds, per-site outcomes, quorum waits."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Message
from flwr.common import Code, EvaluateRes, Status

from bcvlm_client.reply_schema import encode_histogram
from bcvlm_model import TASKS
from bcvlm_model.inference.operating_point import OPERATING_POINTS_KEY, threshold_from_histogram
from bcvlm_model.metrics import ScoreHistogram
from bcvlm_server.federated_strategy import FederatedStrategy
from bcvlm_server.run_records import RunRecords
from bcvlm_server.server_config import ServerConfig
from bcvlm_server.strategies import build_inner_strategy
from bcvlm_testing.client_proxy import NodeProxy
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
    record = records.load_metrics(1)
    assert record.status == "failed"
    assert record.failure is not None and record.failure.startswith("0 site(s) trained, min_sites 2")
    assert set(record.site_outcomes) == {"100", "101"}
    for outcome in record.site_outcomes.values():
        assert outcome.outcome == "failed"
        assert outcome.error == "OSError"
        assert outcome.reason is not None and "ClientApp raised" in outcome.reason
        assert outcome.evaluate is not None and outcome.evaluate.startswith("failed (OSError")
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
        count_timeouts=True,
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
    assert first.status == "trained" and first.site_outcomes[str(victim)].outcome == "trained"
    assert str(first.site_outcomes[str(victim)].evaluate).startswith("failed (TimeoutError")
    assert second.status == "trained" and str(victim) not in second.site_outcomes
    assert grid.waited_s == timeout  # the transport timed out on the dead site exactly once
    # Nothing else waited: a wait would add a whole timeout; the rest is the sites' work plus the server's own
    # (models, checkpoints, two SecAgg+ passes per round: training and secure evaluation).
    assert elapsed - grid.client_seconds < timeout


def test_a_missing_quorum_fails_the_round_after_one_timeout(tmp_path: Path) -> None:
    timeout = 12.0
    sites = {100 + k: make_site(tmp_path, f"site{k}", n_train=4, n_test=4, seed=k) for k in range(3)}
    departed = {102}  # never online: 2 of the 3 sites the quorum asks for
    started = time.monotonic()
    _, _, grid = run_inprocess(
        tmp_path,
        sites,
        "server",
        count_timeouts=True,
        departed=departed,
        **{"secagg.enabled": False, "rounds": 1, "min_sites": 3, "round_timeout_s": timeout},
    )
    elapsed = time.monotonic() - started
    record = RunRecords(tmp_path / "run").load_metrics(1)
    assert record.status == "failed"
    assert "2 of min 3 sites connected" in str(record.failure)
    assert all(outcome.evaluate == "ok" for outcome in record.site_outcomes.values())  # evaluated anyway
    # One wait for the quorum (Flower's client manager waits in real time), not two and not a day; a timeout the
    # grid charged for a silent site counts as the time it would have waited.
    assert timeout <= elapsed + grid.waited_s - grid.client_seconds < 2 * timeout


def _site_histograms(negatives_at: int, positives_at: int, n: int = 20) -> ScoreHistogram:
    """`n` negatives spread over 10 bins from `negatives_at`, `n` positives over 10 bins from `positives_at`."""
    positives, negatives = np.zeros(100, np.int64), np.zeros(100, np.int64)
    negatives[negatives_at : negatives_at + 10] = n // 10
    positives[positives_at : positives_at + 10] = n // 10
    return ScoreHistogram(positives, negatives)


def _strategy_saving_extras(cfg: ServerConfig, run_dir: Path) -> tuple[FederatedStrategy, dict[int, dict]]:
    """A strategy over a 3-parameter model whose checkpoint writer records each round's `extra`."""
    arrays = [np.zeros(3, dtype=np.float32)]
    saved: dict[int, dict] = {}
    strategy = FederatedStrategy(
        cfg,
        build_inner_strategy(cfg, arrays),
        arrays,
        records=RunRecords(run_dir),
        save_checkpoint=lambda round_, _arrays, extra: saved.__setitem__(round_, extra),
    )
    return strategy, saved


def test_the_checkpoint_threshold_comes_from_validation_histograms_not_test_ones(tmp_path: Path) -> None:
    cfg = ServerConfig(run_dir=str(tmp_path))
    cfg.secagg.enabled = False
    cfg.evaluation.n_bins, cfg.evaluation.min_cases, cfg.evaluation.specificity = 100, 5, 0.9
    strategy, saved = _strategy_saving_extras(cfg, tmp_path)
    test, validation = _site_histograms(60, 80), _site_histograms(10, 40)  # validation scores sit lower
    metrics = {
        **{f"hist_{task}": encode_histogram(test) for task in TASKS},
        **{f"val_hist_{task}": encode_histogram(validation) for task in TASKS},
        **{f"cases_{task}": 40 for task in TASKS},
    }
    reply = EvaluateRes(Status(Code.OK, "Success"), 0.0, 40, metrics)
    strategy.aggregate_evaluate(1, [(NodeProxy(7), reply)], [])
    points = saved[1][OPERATING_POINTS_KEY]
    for task in TASKS:
        assert points[task]["threshold"] == threshold_from_histogram(validation, 0.9).threshold
        assert points[task]["threshold"] < 0.6 <= threshold_from_histogram(test, 0.9).threshold
        assert points[task]["n_validation_cases"] == 40
    record = RunRecords(tmp_path).load_metrics(1)
    point = record.operating_points.tasks[TASKS[0]].operating_point
    assert point is not None and point["threshold"] < 0.6


def test_plain_replies_without_validation_histograms_leave_the_checkpoint_without_a_point(tmp_path: Path) -> None:
    cfg = ServerConfig(run_dir=str(tmp_path))
    cfg.secagg.enabled = False
    cfg.evaluation.n_bins, cfg.evaluation.min_cases = 100, 5
    strategy, saved = _strategy_saving_extras(cfg, tmp_path)
    metrics = {f"hist_{task}": encode_histogram(_site_histograms(60, 80)) for task in TASKS}
    strategy.aggregate_evaluate(1, [(NodeProxy(7), EvaluateRes(Status(Code.OK, "Success"), 0.0, 40, metrics))], [])
    assert OPERATING_POINTS_KEY not in saved[1]
    record = RunRecords(tmp_path).load_metrics(1)
    assert "no validation data" in str(record.operating_points.tasks[TASKS[0]].withheld)
