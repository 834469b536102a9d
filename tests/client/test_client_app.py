"""The site's ClientApp: `compute.num_threads` sets torch's threads in the process that trains; one model and one
site log per site in a process that serves many; SecAgg+ key stages without torch."""

from __future__ import annotations

from pathlib import Path

import torch

from bcvlm_client.client_app import LOGGER, log_to_site, trainer_for
from bcvlm_client.process_model import shared_federated_model
from bcvlm_client.site_config import SiteConfig
from bcvlm_client.site_log import SITE_LOG


def test_num_threads_sets_torch_threads_where_the_site_trains(tmp_path: Path) -> None:
    (tmp_path / "manifest.csv").write_text("image_id\n")
    site = SiteConfig(site_id="threads", insecure=True, state_dir=str(tmp_path / "state"))
    site.data.manifest = str(tmp_path / "manifest.csv")
    site.compute.num_threads = 1
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        trainer_for(site)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def _site(tmp_path: Path, name: str) -> SiteConfig:
    (tmp_path / "manifest.csv").write_text("image_id\n")
    site = SiteConfig(site_id=name, insecure=True, state_dir=str(tmp_path / name))
    site.data.manifest = str(tmp_path / "manifest.csv")
    return site


def test_the_sites_of_a_process_share_its_model(tmp_path: Path) -> None:
    """A simulation worker serves many sites: each builds no model of its own."""
    assert trainer_for(_site(tmp_path, "a")).model_factory is shared_federated_model
    assert trainer_for(_site(tmp_path, "b")).model_factory is shared_federated_model


def test_a_site_log_holds_only_that_sites_lines(tmp_path: Path) -> None:
    first, second = _site(tmp_path, "first"), _site(tmp_path, "second")
    try:
        log_to_site(first)
        LOGGER.info("line of the first site")
        log_to_site(second)
        LOGGER.info("line of the second site")
    finally:
        for handler in list(LOGGER.handlers):
            if str(getattr(handler, "baseFilename", "")).startswith(str(tmp_path)):
                LOGGER.removeHandler(handler)
                handler.close()
    first_log = (Path(first.state_dir) / SITE_LOG).read_text()
    second_log = (Path(second.state_dir) / SITE_LOG).read_text()
    assert "line of the first site" in first_log and "second site" not in first_log
    assert "line of the second site" in second_log and "first site" not in second_log


STAGE_PROBE = r'''
import json, sys
import numpy as np
import bcvlm_client.client_app as client_app
seen = {"import": "torch" in sys.modules}
from flwr.app import Context, RecordDict
from flwr.common import ndarrays_to_parameters
from flwr.server import ServerConfig
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow
from bcvlm_testing.inprocess_grid import InProcessGrid
from bcvlm_server.secagg_masks import FullStrengthSecAggPlusWorkflow

prepared = json.loads(open(sys.argv[1]).read())
arrays = list(np.load(prepared["arrays"]).values())

class Probe(FullStrengthSecAggPlusWorkflow):
    """Notes after each stage whether anything in this process has imported torch."""
    def setup_stage(self, *args):
        ok = super().setup_stage(*args); seen["setup"] = "torch" in sys.modules; return ok
    def share_keys_stage(self, *args):
        ok = super().share_keys_stage(*args); seen["share_keys"] = "torch" in sys.modules; return ok
    def collect_masked_vectors_stage(self, *args):
        ok = super().collect_masked_vectors_stage(*args); seen["train"] = "torch" in sys.modules; return ok

strategy = FedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=3, min_available_clients=3,
                  initial_parameters=ndarrays_to_parameters(arrays), on_fit_config_fn=lambda r: prepared["config"])
grid = InProcessGrid(client_app.app, {node: {"site-config": path} for node, path in prepared["sites"].items()})
context = LegacyContext(context=Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={}),
                        config=ServerConfig(num_rounds=1), strategy=strategy)
DefaultWorkflow(fit_workflow=Probe(num_shares=1.0, reconstruction_threshold=0.67, max_weight=100.0, timeout=60.0))(
    grid, context)
print(json.dumps(seen))
'''


def test_secagg_key_stages_import_neither_torch_nor_the_model(tmp_path: Path) -> None:
    """Flower starts a fresh ClientApp process per message: only the one that trains should pay for torch."""
    import json
    import subprocess
    import sys

    import numpy as np
    import yaml

    from bcvlm_client.array_packing import pack_model
    from bcvlm_client.run_settings import encode_round_settings
    from bcvlm_server.server_app import trainable_arrays
    from bcvlm_server.server_config import load_server_config
    from bcvlm_testing.federation_sites import make_site, server_config_dict, server_model_factory

    sites = {100 + i: str(make_site(tmp_path, f"site{i}", seed=i)) for i in range(3)}
    (tmp_path / "server.yaml").write_text(yaml.safe_dump(server_config_dict(tmp_path / "run")))
    cfg = load_server_config(tmp_path / "server.yaml")
    np.savez(tmp_path / "arrays.npz", *pack_model(trainable_arrays(server_model_factory(cfg))))  # as sent
    config = encode_round_settings(
        server_round=1,
        planned_rounds=1,
        proximal_mu=0.0,
        n_bins=cfg.evaluation.n_bins,
        model=cfg.model,
        preprocess=cfg.preprocess,
        text=cfg.text,
        local_train=cfg.local_train,
        dp_trainable=cfg.dp_trainable,
        dp=cfg.dp_model,
    )
    (tmp_path / "prepared.json").write_text(
        json.dumps({"arrays": str(tmp_path / "arrays.npz"), "config": config, "sites": sites})
    )
    done = subprocess.run(
        [sys.executable, "-c", STAGE_PROBE, str(tmp_path / "prepared.json")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"import": False, "setup": False, "share_keys": False, "train": True}
