"""Run the real ServerApp and ClientApp on Flower's simulation engine (Ray), one virtual SuperNode per site."""

from __future__ import annotations

import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from flwr.app import Context, Message
from flwr.serverapp import Grid, ServerApp

from bcvlm_client.flower_process import apply_flower_env_defaults
from bcvlm_model.atomic_io import atomic_write_json, read_json
from bcvlm_simulation.config import ResourcesConfig
from bcvlm_simulation.ray_health import RayWatchGrid, start_ray

SIMULATION_DIR_ENV = "BCVLM_SIMULATION_DIR"
"""Environment variable naming the run dir; the apps' default resolvers read it (docs/architecture.md)."""


def site_config_path(run_dir: Path, partition_id: int) -> Path:
    """`<run dir>/sites/site_<k>.yaml`: the SiteConfig of virtual site k (partition-id k)."""
    return run_dir / "sites" / f"site_{partition_id}.yaml"


def server_config_path(run_dir: Path) -> Path:
    """`<run dir>/server.yaml`: the ServerConfig of the simulated coordinating center."""
    return run_dir / "server.yaml"


def node_map_dir(run_dir: Path) -> Path:
    """Where the simulation records which Flower node id ran which virtual site (simulation bookkeeping only)."""
    return run_dir / "node_map"


def ray_placement_dir(run_dir: Path) -> Path:
    """Where the simulation records on which Ray node each virtual site's messages ran."""
    return node_map_dir(run_dir) / "ray_nodes"


def _ray_node_id() -> str | None:
    """The Ray node this process runs on (None outside Ray)."""
    try:
        import ray
    except ImportError:
        return None
    return str(ray.get_runtime_context().get_node_id()) if ray.is_initialized() else None


@dataclass
class SimulatedSiteResolver:
    """ClientApp site resolution for simulation: partition-id k -> sites/site_k.yaml, noting node id -> site."""

    run_dir: str

    def __call__(self, context: Context) -> Any:
        from bcvlm_client.site_config import load_site_config

        partition_id = int(context.node_config["partition-id"])
        path = site_config_path(Path(self.run_dir), partition_id)
        site = load_site_config(path)
        marker = node_map_dir(Path(self.run_dir)) / f"{context.node_id}.json"
        if not marker.is_file():
            atomic_write_json(
                marker, {"node_id": str(context.node_id), "partition_id": partition_id, "site": site.site_id}
            )
        ray_node = _ray_node_id()
        if ray_node is not None:  # the actor pool runs any site on any node: one marker per (site, Ray node)
            placement = ray_placement_dir(Path(self.run_dir)) / f"{partition_id}-{ray_node}.json"
            if not placement.is_file():
                atomic_write_json(
                    placement, {"partition_id": partition_id, "site": site.site_id, "ray_node_id": ray_node}
                )
        return site


@dataclass
class SeedNumpyPerMessage:
    """ClientApp mod: seed NumPy's global RNG from (seed, partition, round, message type, SecAgg+ stage).

    Flower's SecAgg+ quantisation rounds stochastically with `np.random`; seeding each message from what it is
    (never from arrival order) makes a simulated run give the same aggregate twice.
    """

    seed: int

    def __call__(self, msg: Message, context: Context, call_next: Callable[[Message, Context], Message]) -> Message:
        stage = ""
        config = msg.content.config_records.get("secaggplus") if msg.has_content() else None
        if config is not None:
            stage = str(config.get("stage", ""))
        key = (
            f"{self.seed}|{context.node_config.get('partition-id', context.node_id)}|{msg.metadata.group_id}|"
            f"{msg.metadata.message_type}|{stage}"
        )
        np.random.seed(zlib.crc32(key.encode()))
        return call_next(msg, context)


def read_node_map(run_dir: Path) -> dict[str, str]:
    """Flower node id (as str) -> virtual site name, from the markers the resolver wrote."""
    mapping: dict[str, str] = {}
    folder = node_map_dir(run_dir)
    if folder.is_dir():
        for marker in sorted(folder.glob("*.json")):
            entry = read_json(marker)
            mapping[str(entry["node_id"])] = str(entry["site"])
    return mapping


def read_ray_placement(run_dir: Path) -> dict[str, list[str]]:
    """Virtual site name -> the Ray node ids its messages ran on (sorted), from the resolver's markers."""
    placement: dict[str, set[str]] = {}
    folder = ray_placement_dir(run_dir)
    if folder.is_dir():
        for marker in folder.glob("*.json"):
            entry = read_json(marker)
            placement.setdefault(str(entry["site"]), set()).add(str(entry["ray_node_id"]))
    return {site: sorted(nodes) for site, nodes in sorted(placement.items())}


def backend_config(resources: ResourcesConfig) -> dict[str, Any]:
    """Flower's Ray backend config: every virtual site's ClientApp gets the same CPU/GPU share.

    Flower passes `init_args` to `ray.init`; with `resources.ray_address` that joins the existing cluster (whose
    nodes declare their own CPUs and GPUs, so none are given here: Ray refuses them when connecting). Without it the
    address is "local": a Ray of its own, even where `ray start` or RAY_ADDRESS names a cluster that `ray.init`
    would otherwise join (and then refuse the CPU count)."""
    init_args: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
    if resources.ray_address:
        init_args["address"] = str(resources.ray_address)
    else:
        init_args["address"] = "local"
        init_args["num_cpus"] = int(resources.ray_num_cpus or (os.cpu_count() or 1))
        init_args["num_gpus"] = int(resources.ray_num_gpus)
    return {
        "client_resources": {
            "num_cpus": float(resources.num_cpus_per_site),
            "num_gpus": float(resources.num_gpus_per_site),
        },
        "init_args": init_args,
    }


def _watching_ray(server_app: ServerApp, client_resources: dict[str, float]) -> ServerApp:
    """`server_app` on a RayWatchGrid: the first exchange no site answers checks Ray, and a dead Ray ends the run."""
    watched = ServerApp()

    @watched.main()
    def main(grid: Grid, context: Context) -> None:
        server_app(RayWatchGrid(grid, client_resources), context)

    return watched


def run_federation(
    run_dir: Path, num_sites: int, resources: ResourcesConfig, seed: int = 0, reproducible: bool = False
) -> float:
    """Run `bcvlm_server`'s ServerApp with `num_sites` simulated `bcvlm_client` ClientApps; return wall seconds.

    `reproducible` (the sites' `privacy.insecure_reproducible_noise`) also seeds SecAgg+'s stochastic rounding per
    message; otherwise nothing privacy-relevant at the sites is seeded."""
    import ray
    from flwr.simulation import run_simulation

    from bcvlm_client.client_app import build_client_app
    from bcvlm_server.server_app import build_server_app

    run_dir = run_dir.resolve()
    os.environ[SIMULATION_DIR_ENV] = str(run_dir)
    apply_flower_env_defaults()
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_worker_niceness", "0")  # Ray starts workers at nice 15: sites would starve
    backend = backend_config(resources)
    client_app = build_client_app(
        resolve_site=SimulatedSiteResolver(str(run_dir)), extra_mods=[SeedNumpyPerMessage(seed)] if reproducible else []
    )
    server_app = _watching_ray(build_server_app(), backend["client_resources"])  # reads server.yaml in the run dir
    if resources.ray_address:
        # workers on an existing cluster keep the environment their node was started with, not this process's
        print(
            f"[simulate] joining the Ray cluster at {resources.ray_address} (resources.ray_num_cpus/ray_num_gpus "
            "are not used; each site takes num_cpus_per_site/num_gpus_per_site on some node)",
            flush=True,
        )
    started = time.perf_counter()
    try:
        start_ray(backend)  # a Ray that cannot run a site stops the run here, before round 1
        run_simulation(
            server_app=server_app,
            client_app=client_app,
            num_supernodes=num_sites,
            backend_config=backend,
        )
    finally:
        if ray.is_initialized():
            ray.shutdown()
    return time.perf_counter() - started
