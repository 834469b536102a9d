"""Ray health for `bcvlm simulate`: start Ray as Flower does and stop, naming the problem, when it cannot run a site."""

from __future__ import annotations

import copy
import logging
from typing import Any, Iterable, Mapping

from flwr.app import Message
from flwr.serverapp.grid import Grid

from bcvlm_server.delegating_grid import DelegatingGrid

LOGGER = logging.getLogger("bcvlm_simulation.ray_health")
PROBE_TIMEOUT_S = 120.0
"""How long a site-sized probe task may take to run. A dead raylet fails it in about 10 s; a healthy but loaded
machine needs a few seconds to start one worker process, so the margin only matters for a slow, busy cluster."""


class RayUnavailableError(RuntimeError):
    """Ray cannot run the virtual sites: it failed to start, its raylet died, or no node has one site's resources."""


def nodes_that_fit(nodes: Iterable[Mapping[str, Any]], client_resources: Mapping[str, float]) -> list[str]:
    """Ids of the alive nodes (entries of `ray.nodes()`) with the CPUs and GPUs of one site."""
    cpus = float(client_resources.get("num_cpus", 0.0))
    gpus = float(client_resources.get("num_gpus", 0.0))
    fitting = []
    for node in nodes:
        offered = node.get("Resources") or {}  # a node that left the cluster keeps its entry, without resources
        if node.get("Alive") and offered.get("CPU", 0.0) >= cpus and offered.get("GPU", 0.0) >= gpus:
            fitting.append(str(node.get("NodeID")))
    return fitting


def _describe(nodes: Iterable[Mapping[str, Any]]) -> str:
    rows = [
        f"{node.get('NodeID', '?')[:8]} alive={bool(node.get('Alive'))} "
        f"CPU={(node.get('Resources') or {}).get('CPU', 0)} GPU={(node.get('Resources') or {}).get('GPU', 0)}"
        for node in nodes
    ]
    return "; ".join(rows) or "none"


def check_ray_runs_a_site(client_resources: Mapping[str, float], timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Raise RayUnavailableError unless an alive Ray node has a site's resources and Ray really runs a task.

    The listing alone is not enough: for some seconds after its raylet died a node is still listed alive, and
    Flower then builds its actor pool on it and every round's sites fail until each round times out."""
    import ray

    if not ray.is_initialized():  # Flower's engine stopped and this process shut Ray down
        raise RayUnavailableError("Ray is not running: the simulation engine stopped (see the errors above)")
    nodes = ray.nodes()
    wanted = f"{client_resources.get('num_cpus', 0)} CPU / {client_resources.get('num_gpus', 0)} GPU per site"
    if not nodes_that_fit(nodes, client_resources):
        raise RayUnavailableError(
            f"no alive Ray node can run a virtual site ({wanted}); Ray's nodes: {_describe(nodes)}. "
            "Ray may have failed to start (see its raylet.out), or resources.num_cpus_per_site/num_gpus_per_site "
            "ask for more than ray_num_cpus/ray_num_gpus (or the cluster's nodes) offer"
        )

    # No resources asked: mid-run, Flower's actors hold every CPU and a site-sized probe would wait for nothing.
    @ray.remote(num_cpus=0)
    def probe() -> str:
        return str(ray.get_runtime_context().get_node_id())

    try:
        ray.get(probe.remote(), timeout=timeout_s)
    except Exception as exc:  # any Ray failure here (raylet died, worker crashed, timeout) means: no site can run
        raise RayUnavailableError(
            f"Ray cannot run a virtual site's task ({wanted}): {type(exc).__name__}: {exc}. "
            "Ray failed to start or its raylet died (see raylet.out in Ray's session logs)"
        ) from exc


def start_ray(backend_cfg: Mapping[str, Any]) -> None:
    """Start (or join) Ray exactly as Flower's Ray backend would, then check that it can run one site.

    Flower's backend leaves an initialised Ray as it is, so the simulation then runs on this one."""
    import ray
    from flwr.server.superlink.fleet.vce.backend.raybackend import RayBackend
    from flwr.supercore.constant import DEFAULT_SIMULATION_CONFIG

    config = copy.deepcopy(dict(backend_cfg))
    # The defaults Flower's run_simulation adds before it builds the backend.
    config.setdefault("init_args", {}).setdefault("logging_level", DEFAULT_SIMULATION_CONFIG.init_args_logging_level)
    try:
        RayBackend(config)
    except Exception as exc:
        if ray.is_initialized():
            ray.shutdown()
        raise RayUnavailableError(f"Ray failed to start: {type(exc).__name__}: {exc}") from exc
    check_ray_runs_a_site(config["client_resources"])


class RayWatchGrid(DelegatingGrid):
    """The ServerApp's grid in simulation: an exchange in which no site answered usefully checks that Ray still
    runs a site, so a raylet that dies mid-run ends the run at that round (Flower would go on round after round)."""

    def __init__(self, inner: Grid, client_resources: Mapping[str, float], timeout_s: float = PROBE_TIMEOUT_S) -> None:
        super().__init__(inner)
        self.client_resources = dict(client_resources)
        self.timeout_s = float(timeout_s)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        messages = list(messages)
        replies = list(self.inner.send_and_receive(messages, timeout=timeout))
        if messages and not any(reply.has_content() for reply in replies):
            LOGGER.warning("no site answered %d message(s): checking that Ray still runs sites", len(messages))
            check_ray_runs_a_site(self.client_resources, self.timeout_s)
        return replies
