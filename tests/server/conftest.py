"""The loopback deployment that test_deployment_loopback.py and test_fleet_gateway.py both observe: built once per
worker (tests/conftest.py keeps both modules on one worker)."""

from __future__ import annotations

import pytest

from bcvlm_testing.loopback_scenario import ObservedDeployment, observe_loopback_deployment


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> ObservedDeployment:
    return observe_loopback_deployment(tmp_path_factory.mktemp("loopback"))
