"""Test-wide settings: offline model hubs, Flower telemetry and update check off, nothing written outside tmp dirs;
how `make test` shares the modules among its pytest-xdist workers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bcvlm_client.flower_process import apply_flower_env_defaults

apply_flower_env_defaults()  # the same settings every Flower process bcvlm starts gets
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Workers share the cores with each other and with the Flower processes they start: one OpenMP thread each (and
    # in every process they start). Two threads per worker on two cores made small torch tests up to 10x slower.
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

from bcvlm_model.cpu_memory import keep_freed_memory  # noqa: E402  (after the environment above)

keep_freed_memory()  # as the CLIs do: tests run the same code paths at the same speed

REPO = Path(__file__).resolve().parents[1]
HANDED_OUT_FIRST = (
    "tests/server/test_cli_rehearsal_docs.py",
    "tests/server/test_deployment_loopback.py",
    "tests/server/test_fleet_gateway.py",
    "tests/server/test_federated_strategy.py",
    "tests/client/test_cli_client.py",
    "tests/client/test_flower_process.py",
    "tests/client/test_approved_clientapp.py",
    "tests/benchmarks/test_gpu_check.py",
)
"""The order in which the long modules (`python benchmarks/suite_wall_time.py`) go to the workers, before all others.
The two Flower deployments (the rehearsal; the loopback deployment with both modules that observe it) start side by
side, and a third worker runs the modules that mostly wait (timeouts, refused keys) next to them, then the Ray modules
(one unit, see RAY_MODULES): started beside both deployments they took up to three times as long."""
LOOPBACK_DEPLOYMENT_MODULES = frozenset(
    {"tests/server/test_deployment_loopback.py", "tests/server/test_fleet_gateway.py"}
)
"""Modules that observe the one loopback deployment (tests/server/conftest.py): on one worker, it is built once."""
RAY_MODULES = frozenset(
    {
        "tests/benchmarks/test_gpu_check.py",
        "tests/simulation/test_cli_end_to_end.py",
        "tests/simulation/test_federation.py",
        "tests/simulation/test_ray_health.py",
    }
)
"""Modules that start Ray. They run one after another on one worker: spread over the workers, two Ray simulations ran
beside the two deployments and the whole suite took longer (617 s against 590 s on the 2-core machine)."""


def module_of(nodeid: str) -> str:
    """A test's module, as the repository-relative path in its node id."""
    return nodeid.split("::", 1)[0]


def work_unit(nodeid: str) -> str:
    """What one worker runs as a whole: a test's module (so its module fixtures are built once), `loopback` for the
    modules that observe the loopback deployment, or `ray` for every module that starts Ray."""
    module = module_of(nodeid)
    if module in LOOPBACK_DEPLOYMENT_MODULES:
        return "loopback"
    return "ray" if module in RAY_MODULES else module


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The modules of HANDED_OUT_FIRST first, in that order, the others in collection order."""
    stale = [
        path for path in (*HANDED_OUT_FIRST, *RAY_MODULES, *LOOPBACK_DEPLOYMENT_MODULES) if not (REPO / path).is_file()
    ]
    if stale:
        raise pytest.UsageError(f"tests/conftest.py names test files that do not exist: {stale}")
    rank = {path: index for index, path in enumerate(HANDED_OUT_FIRST)}
    items.sort(key=lambda item: rank.get(module_of(item.nodeid), len(rank)))  # stable


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """pytest-xdist's loadscope scheduling with `work_unit` as the scope. (Its `xdist_group` marks do not group
    under pytest 9.2: pytest-dev/pytest-xdist#1386.)"""
    from xdist.scheduler import LoadScopeScheduling

    class WorkUnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return WorkUnitScheduling(config, log)
