"""Flower's Ray backend settings; a simulation joining an existing 2-node Ray cluster (`resources.ray_address`)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from bcvlm_client.flower_process import FLOWER_ENV_DEFAULTS, free_port
from bcvlm_simulation.config import ResourcesConfig
from bcvlm_simulation.federation import backend_config, read_ray_placement
from bcvlm_simulation.round_metrics import read_round_metrics
from bcvlm_testing.federation_sites import write_simulated_sites

RAY = Path(sys.executable).with_name("ray")
NODE_WAIT_S = 240.0


def test_a_local_ray_is_sized_by_ray_num_cpus_and_gpus() -> None:
    config = backend_config(ResourcesConfig(num_cpus_per_site=0.5, ray_num_cpus=3, ray_num_gpus=1))
    assert config["init_args"]["num_cpus"] == 3 and config["init_args"]["num_gpus"] == 1
    assert config["init_args"]["address"] == "local"  # not a cluster `ray start` or RAY_ADDRESS names
    assert config["client_resources"] == {"num_cpus": 0.5, "num_gpus": 0.0}


def test_ray_address_joins_the_cluster_without_sizing_it() -> None:
    config = backend_config(
        ResourcesConfig(num_cpus_per_site=2.0, num_gpus_per_site=0.25, ray_num_cpus=2, ray_address="10.0.0.5:6379")
    )
    assert config["init_args"]["address"] == "10.0.0.5:6379"
    assert "num_cpus" not in config["init_args"] and "num_gpus" not in config["init_args"]  # Ray refuses them
    assert config["client_resources"] == {"num_cpus": 2.0, "num_gpus": 0.25}


def _ray_start(args: list[str], log: Path) -> subprocess.Popen:
    """`ray start ... --block` in its own session, so that teardown can end exactly the processes it started."""
    ports = [
        "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port",
        "--runtime-env-agent-port",
        "--metrics-export-port",
    ]
    command = [
        str(RAY),
        "start",
        *args,
        "--num-cpus",
        "1",
        "--num-gpus",
        "0",
        "--object-store-memory",
        str(80 * 2**20),
        "--disable-usage-stats",
        "--block",
    ]
    for flag in ports:  # two nodes on one machine: each needs its own agent ports
        command += [flag, str(free_port())]
    return subprocess.Popen(
        command,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "RAY_DEDUP_LOGS": "0"},
    )


def _stop(process: subprocess.Popen) -> None:
    """End the `ray start` process and every process of its session (raylet, GCS, agents, workers)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        time.sleep(1.0)


def _wait_for(log: Path, text: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + NODE_WAIT_S
    while text not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"ray start did not get ready:\n{log.read_text()[-3000:]}")
        time.sleep(1.0)


def _alive_node_ids(address: str, expected: int) -> list[str]:
    """The cluster's alive node ids, once `expected` nodes have joined (asked from a separate driver)."""
    script = (
        f"import ray, time, sys\nray.init(address={address!r}, logging_level='ERROR')\n"
        f"deadline = time.monotonic() + {NODE_WAIT_S}\n"
        "while True:\n"
        "    ids = sorted(n['NodeID'] for n in ray.nodes() if n['Alive'])\n"
        f"    if len(ids) >= {expected} or time.monotonic() > deadline: break\n"
        "    time.sleep(1.0)\n"
        "print('NODES', ','.join(ids))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=NODE_WAIT_S + 120)
    line = [row for row in done.stdout.splitlines() if row.startswith("NODES ")]
    assert done.returncode == 0 and line, done.stdout[-2000:] + done.stderr[-3000:]
    return line[0].split(" ", 1)[1].split(",")


@pytest.fixture(scope="module")
def two_node_cluster() -> Iterator[tuple[str, list[str]]]:
    """A head and a worker node of 1 CPU each on this machine; yields (address, node ids); both stopped after."""
    temp_dir = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))  # short: Ray's socket paths must stay < 108 bytes
    port = free_port()
    started: list[subprocess.Popen] = []
    try:
        head_log, worker_log = temp_dir / "head.log", temp_dir / "worker.log"
        started.append(
            _ray_start(
                [
                    "--head",
                    "--port",
                    str(port),
                    "--temp-dir",
                    str(temp_dir),
                    "--include-dashboard",
                    "false",
                    "--ray-client-server-port",
                    str(free_port()),
                ],
                head_log,
            )
        )
        _wait_for(head_log, "will now block forever", started[0])
        address = f"127.0.0.1:{port}"
        started.append(_ray_start(["--address", address], worker_log))
        _wait_for(worker_log, "will now block forever", started[1])
        nodes = _alive_node_ids(address, expected=2)
        assert len(nodes) == 2, nodes
        yield address, nodes
    finally:
        for process in reversed(started):
            _stop(process)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_sites_of_a_simulation_run_on_both_nodes_of_an_existing_cluster(tmp_path, two_node_cluster) -> None:
    address, cluster_nodes = two_node_cluster
    run_dir = tmp_path / "run"
    write_simulated_sites(run_dir, tmp_path / "data", ["site_a", "site_b"], rounds=1, min_sites=2)
    script = (
        "import sys\nfrom pathlib import Path\nfrom bcvlm_simulation.config import ResourcesConfig\n"
        "from bcvlm_simulation.federation import run_federation\n"
        f"run_federation(Path({str(run_dir)!r}), 2, ResourcesConfig(num_cpus_per_site=1.0, "
        f"ray_address={address!r}))\n"
    )
    log = tmp_path / "simulate.log"
    with log.open("w") as out:
        done = subprocess.run(
            [sys.executable, "-c", script],
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=1300,
            env={**os.environ, **FLOWER_ENV_DEFAULTS, "RAY_DEDUP_LOGS": "0"},
            cwd=tmp_path,
        )
    text = log.read_text()
    assert done.returncode == 0, text[-4000:]
    assert f"joining the Ray cluster at {address}" in text
    assert [entry["round"] for entry in read_round_metrics(run_dir / "federated")] == [1]
    placement = read_ray_placement(run_dir)
    assert set(placement) == {"site_a", "site_b"}
    used = {node for nodes in placement.values() for node in nodes}
    assert used == set(cluster_nodes), (placement, cluster_nodes)  # both nodes ran sites; no local Ray was started
