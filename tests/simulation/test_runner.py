"""`bcvlm simulate` refuses what it cannot run as configured: a cohort cache prepared with other preprocessing than
`server.preprocess` (naming both), a DP-centralized baseline without a DP budget."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bcvlm_model.data.manifest import read_manifest
from bcvlm_simulation.config import load_simulation_config
from bcvlm_simulation.runner import SimulationError, check_cohort_cache, run_simulation_job
from bcvlm_testing.federation_sites import make_site, tiny_preprocess


def test_a_cohort_cache_of_another_size_is_refused_naming_both(tmp_path) -> None:
    folder = make_site(tmp_path, "cohort").parent  # arrays at 64x32
    manifest = read_manifest(folder / "manifest.csv")
    with pytest.raises(SimulationError, match=r"asks for 128x64.*24 of 24 cohort images.*holds 64x32"):
        check_cohort_cache(
            manifest, str(folder / "cache"), replace(tiny_preprocess(), image_height=128, image_width=64)
        )


def test_a_matching_cohort_cache_and_no_cache_pass(tmp_path) -> None:
    folder = make_site(tmp_path, "cohort").parent
    manifest = read_manifest(folder / "manifest.csv")
    check_cohort_cache(manifest, str(folder / "cache"), tiny_preprocess())
    check_cohort_cache(manifest, None, replace(tiny_preprocess(), image_height=128, image_width=64))


def test_a_dp_centralized_baseline_without_dp_is_refused_before_any_work(tmp_path) -> None:
    run_dir = tmp_path / "run"
    cfg = load_simulation_config("tiny", [f"run_dir={run_dir}", "site.privacy.enabled=false"])
    with pytest.raises(SimulationError, match=r"baselines.dp_centralized=true.*site.privacy.enabled=false"):
        run_simulation_job(cfg)
    assert not run_dir.exists()
