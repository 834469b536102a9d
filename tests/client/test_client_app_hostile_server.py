"""A hostile, test-only ServerApp against the real site ClientApp: every instruction outside the site's limits is
declined with nothing trained, charged or uploaded but zeros.

The ServerApp is a real `flwr.serverapp.ServerApp` that crafts its own fit messages (what a compromised coordinating
center can do); messages travel through the in-process grid to the ClientApp a site runs (egress guard included).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import flwr.compat.common.recorddict_compat as compat
import numpy as np
import pytest
from flwr.app import Context, Message, RecordDict
from flwr.app.message_type import MessageType
from flwr.common import FitIns, FitRes, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.serverapp import Grid, ServerApp

from bcvlm_client.client_app import build_client_app
from bcvlm_client.privacy_ledger import SitePrivacyLedger
from bcvlm_client.reply_schema import DeclineReason
from bcvlm_client.site_config import load_site_config
from bcvlm_model.config_io import config_to_dict
from bcvlm_testing.federation_sites import (
    make_site,
    site_trainer_factory,
    tiny_global_arrays,
    tiny_model_config,
    tiny_round_config,
)
from bcvlm_testing.inprocess_grid import InProcessGrid

NODE = 11
LIMITS = {"max_local_steps": 3, "max_rounds": 5, "model_kinds": ["vlm"]}


def honest_settings(server_round: int = 1) -> dict[str, Any]:
    """What an honest bcvlm server sends for the tiny federation."""
    return tiny_round_config(server_round, local_steps=1)


def hostile_server_app(
    instructions: list[dict[str, Any]], arrays: list[np.ndarray], replies: list[FitRes]
) -> ServerApp:
    """A ServerApp that sends each crafted fit config in turn to every node and keeps the decoded replies."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        for config in instructions:
            fitins = FitIns(ndarrays_to_parameters(arrays), config)
            messages = [
                Message(
                    content=compat.fitins_to_recorddict(fitins, True),
                    dst_node_id=node,
                    message_type=MessageType.TRAIN,
                    group_id=str(config["server-round"]),
                )
                for node in grid.get_node_ids()
            ]
            for reply in grid.send_and_receive(messages):
                assert reply.has_content(), reply.error if reply.has_error() else "no reply"
                replies.append(compat.recorddict_to_fitres(reply.content, keep_input=False))

    return app


@pytest.fixture(scope="module")
def global_arrays() -> list[np.ndarray]:
    return tiny_global_arrays()


def run_hostile(
    root: Path, name: str, arrays: list[np.ndarray], *instructions: dict[str, Any]
) -> tuple[list[FitRes], Path]:
    site_yaml = make_site(root, name, n_train=8, n_test=4, limits=LIMITS, val_fraction=0.0)  # all 8 train
    replies: list[FitRes] = []
    client_app = build_client_app(trainer_factory=site_trainer_factory)
    grid = InProcessGrid(client_app, {NODE: {"site-config": str(site_yaml)}}, run_id=42)
    server_context = Context(run_id=42, node_id=1, node_config={}, state=RecordDict(), run_config={})
    hostile_server_app(list(instructions), arrays, replies)(grid, server_context)
    return replies, site_yaml


def assert_declined_with_nothing_uploaded(reply: FitRes, reason: DeclineReason) -> None:
    assert reply.metrics["declined"] == reason
    assert reply.num_examples == 0 and reply.metrics["steps"] == 0
    assert all(not np.any(array) for array in parameters_to_ndarrays(reply.parameters))


def charged_rounds(site_yaml: Path) -> list[dict[str, Any]]:
    ledger = SitePrivacyLedger.open(load_site_config(site_yaml).state_dir)
    return [entry for entry in ledger.rounds if entry["kind"] == "charged"]


def _dp_off(config: dict[str, Any]) -> None:
    config["dp"] = False


def _no_dp_trainable_set(config: dict[str, Any]) -> None:
    config["dp-trainable"] = "null"


def _too_many_local_steps(config: dict[str, Any]) -> None:
    config["local-train"] = json.dumps(
        {**json.loads(config["local-train"]), "local_steps": LIMITS["max_local_steps"] + 1}
    )


def _one_pass_over_too_many_batches(config: dict[str, Any]) -> None:
    config["local-train"] = json.dumps({**json.loads(config["local-train"]), "local_steps": 0})  # 8 rows / batch 4 = 2


def _model_kind_not_allowed(config: dict[str, Any]) -> None:
    config["model-config"] = json.dumps({**config_to_dict(tiny_model_config()), "kind": "image_only"})


def _too_many_planned_rounds(config: dict[str, Any]) -> None:
    config["planned-rounds"] = LIMITS["max_rounds"] + 1


def _round_past_the_plan(config: dict[str, Any]) -> None:
    config["server-round"] = config["planned-rounds"] + 1


HOSTILE: dict[str, tuple[Callable[[dict[str, Any]], None], DeclineReason]] = {
    "dp-off": (_dp_off, DeclineReason.DP_REQUIRED),
    "dp-trainable-null": (_no_dp_trainable_set, DeclineReason.DP_UNSAFE_MODEL),
    "local-steps-over-limit": (_too_many_local_steps, DeclineReason.LOCAL_STEPS_OVER_LIMIT),
    "model-kind-not-allowed": (_model_kind_not_allowed, DeclineReason.MODEL_KIND_NOT_ALLOWED),
    "planned-rounds-over-limit": (_too_many_planned_rounds, DeclineReason.ROUNDS_OVER_LIMIT),
    "round-past-the-plan": (_round_past_the_plan, DeclineReason.ROUNDS_OVER_LIMIT),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_an_instruction_outside_the_site_limits_is_declined(tmp_path, global_arrays, name: str) -> None:
    mutate, reason = HOSTILE[name]
    config = honest_settings()
    mutate(config)
    replies, site_yaml = run_hostile(tmp_path, name, global_arrays, config)
    assert len(replies) == 1
    assert_declined_with_nothing_uploaded(replies[0], reason)
    assert charged_rounds(site_yaml) == []


def test_a_pass_over_more_batches_than_allowed_is_declined(tmp_path, global_arrays) -> None:
    config = honest_settings()
    _one_pass_over_too_many_batches(config)
    site_limits = {**LIMITS, "max_local_steps": 1}
    site_yaml = make_site(tmp_path, "site", n_train=8, n_test=4, limits=site_limits)
    replies: list[FitRes] = []
    grid = InProcessGrid(
        build_client_app(trainer_factory=site_trainer_factory), {NODE: {"site-config": str(site_yaml)}}
    )
    hostile_server_app([config], global_arrays, replies)(
        grid, Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
    )
    assert_declined_with_nothing_uploaded(replies[0], DeclineReason.LOCAL_STEPS_OVER_LIMIT)


def test_the_same_round_sent_twice_trains_once(tmp_path, global_arrays) -> None:
    replies, site_yaml = run_hostile(tmp_path, "replay", global_arrays, honest_settings(1), honest_settings(1))
    assert replies[0].metrics["declined"] == DeclineReason.TRAINED and replies[0].num_examples == 8
    assert any(np.any(array) for array in parameters_to_ndarrays(replies[0].parameters))
    assert_declined_with_nothing_uploaded(replies[1], DeclineReason.ROUND_REPLAYED)
    assert [entry["round"] for entry in charged_rounds(site_yaml)] == [1]


def test_an_honest_instruction_trains(tmp_path, global_arrays) -> None:
    """The control for the declines above: the same site trains on the unmodified settings."""
    replies, site_yaml = run_hostile(tmp_path, "honest", global_arrays, honest_settings(1), honest_settings(2))
    assert [reply.metrics["declined"] for reply in replies] == [DeclineReason.TRAINED] * 2
    assert [entry["round"] for entry in charged_rounds(site_yaml)] == [1, 2]
