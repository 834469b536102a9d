"""The site's ClientApp: `compute.num_threads` sets torch's threads in the process that trains."""
from __future__ import annotations

from pathlib import Path

import torch

from bcvlm_client.client_app import trainer_for
from bcvlm_client.site_config import SiteConfig


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
