"""Ray health: a simulation whose Ray cannot run a site stops with an error naming Ray, not after rounds x timeout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from flwr.app import Message, RecordDict
from flwr.app.message_type import MessageType
from flwr.clientapp import ClientApp

from bcvlm_client.flower_process import FLOWER_ENV_DEFAULTS
from bcvlm_simulation.ray_health import RayUnavailableError, RayWatchGrid, nodes_that_fit
from bcvlm_simulation.round_metrics import read_round_metrics
from bcvlm_testing.federation_sites import write_simulated_sites
from bcvlm_testing.inprocess_grid import InProcessGrid

NODES = (11, 12)
SITE = {"num_cpus": 1.0, "num_gpus": 0.0}


def _node(node_id: str, alive: bool, cpus: float, gpus: float = 0.0) -> dict:
    return {"NodeID": node_id, "Alive": alive, "Resources": {"CPU": cpus, "GPU": gpus} if alive else {}}


def test_only_alive_nodes_with_a_sites_cpus_and_gpus_fit() -> None:
    nodes = [_node("dead", False, 0), _node("small", True, 0.5), _node("cpu", True, 2), _node("gpu", True, 2, 1)]
    assert nodes_that_fit(nodes, SITE) == ["cpu", "gpu"]
    assert nodes_that_fit(nodes, {"num_cpus": 1.0, "num_gpus": 0.5}) == ["gpu"]


def _grid(silent: bool) -> InProcessGrid:
    app = ClientApp(
        client_fn=lambda context: None, mods=[lambda msg, ctx, call_next: Message(RecordDict(), reply_to=msg)]
    )
    return InProcessGrid(app, {node: {} for node in NODES}, silent_nodes=lambda message: silent)


def _send(grid: RayWatchGrid, inner: InProcessGrid) -> list[Message]:
    messages = [inner.create_message(RecordDict(), MessageType.QUERY, node, "1") for node in NODES]
    return list(grid.send_and_receive(messages, timeout=0.5))


def test_an_exchange_no_site_answers_ends_the_run_when_ray_is_not_running() -> None:
    inner = _grid(silent=True)
    with pytest.raises(RayUnavailableError, match="Ray is not running"):
        _send(RayWatchGrid(inner, SITE), inner)


def test_an_answered_exchange_returns_its_replies_without_asking_ray() -> None:
    inner = _grid(silent=False)  # Ray is not running in this process: a check would raise
    assert sorted(reply.metadata.src_node_id for reply in _send(RayWatchGrid(inner, SITE), inner)) == list(NODES)


@pytest.mark.timeout(600)
def test_a_simulation_whose_raylet_died_stops_before_round_one(tmp_path: Path) -> None:
    """Ray starts, then its raylet dies (killed, as a crash would): the run fails with an error naming Ray and
    the raylet, and no round was attempted (Flower alone goes on, every round's sites failing until the timeout)."""
    run_dir = tmp_path / "run"
    write_simulated_sites(run_dir, tmp_path / "data", ["site_a", "site_b"], rounds=3, min_sites=2)
    temp_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"rh{os.getpid()}"  # Ray's socket paths must stay short
    script = (
        "import ray\nfrom pathlib import Path\nfrom bcvlm_simulation.config import ResourcesConfig\n"
        "from bcvlm_simulation.federation import run_federation\n"
        "from bcvlm_simulation.ray_health import RayUnavailableError\n"
        f"ray.init(num_cpus=1, num_gpus=0, include_dashboard=False, _temp_dir={str(temp_dir)!r})\n"
        "ray._private.worker._global_node.kill_raylet()\n"
        "try:\n"
        f"    run_federation(Path({str(run_dir)!r}), 2, ResourcesConfig(num_cpus_per_site=1.0, ray_num_cpus=1))\n"
        "except RayUnavailableError as exc:\n"
        "    print('STOPPED:', exc)\n"
        "    raise SystemExit(3)\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=540,
            env={**os.environ, **FLOWER_ENV_DEFAULTS, "RAY_DEDUP_LOGS": "0"},
            cwd=tmp_path,
        )
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    stopped = [line for line in done.stdout.splitlines() if line.startswith("STOPPED:")]
    assert done.returncode == 3 and stopped, done.stdout[-3000:] + done.stderr[-3000:]
    assert "raylet" in stopped[0]
    assert read_round_metrics(run_dir / "federated") == []
