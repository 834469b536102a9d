"""Hydra configs of `bcvlm simulate`: packaged configs compose into the typed schema, overrides and errors."""

from __future__ import annotations

import pytest

from bcvlm_model.config_io import ConfigError
from bcvlm_simulation.config import SimulationConfig, load_simulation_config


@pytest.mark.parametrize("name", ["simulate", "demo", "tiny", "scale50"])
def test_packaged_configs_compose_into_the_schema(name: str) -> None:
    cfg = load_simulation_config(name)
    assert isinstance(cfg, SimulationConfig)
    assert cfg.server.run_dir == f"{cfg.run_dir}/federated"


def test_demo_is_the_main_job_the_issue_asks_for() -> None:
    cfg = load_simulation_config("demo")
    assert cfg.server.rounds >= 3 and cfg.site.privacy.enabled and cfg.server.secagg.enabled
    assert cfg.cohort.manifest == "" and cfg.cohort.synth.n_sites == 3
    assert cfg.split.kind == "natural" and cfg.split.natural_key == "site_id"
    assert cfg.baselines.centralized and cfg.baselines.local_only and cfg.baselines.image_only


def test_scale_config_has_at_least_50_sites() -> None:
    cfg = load_simulation_config("scale50")
    assert cfg.split.kind == "iid" and cfg.split.num_sites >= 50 and cfg.server.min_sites == cfg.split.num_sites


def test_overrides_apply_and_bad_ones_name_the_key() -> None:
    cfg = load_simulation_config(
        "demo",
        [
            "server.rounds=5",
            "split.kind=dirichlet",
            "split.dirichlet_alpha=0.3",
            "+split.tasks_by_source.rsna=[malignancy]",
        ],
    )
    assert (cfg.server.rounds, cfg.split.kind, cfg.split.dirichlet_alpha) == (5, "dirichlet", 0.3)
    assert cfg.split.tasks_by_source == {"rsna": ["malignancy"]}
    with pytest.raises(ConfigError, match="server.no_such_key"):
        load_simulation_config("demo", ["server.no_such_key=1"])
    with pytest.raises(ConfigError, match="server.rounds"):
        load_simulation_config("demo", ["server.rounds=many"])


def test_ray_address_joins_a_cluster_and_an_empty_one_is_refused() -> None:
    cfg = load_simulation_config("tiny", ["resources.ray_address=auto"])
    assert cfg.resources.ray_address == "auto"
    assert load_simulation_config("tiny").resources.ray_address is None
    with pytest.raises(ConfigError, match="resources.ray_address"):
        load_simulation_config("tiny", ["resources.ray_address=' '"])


def test_split_keys_of_real_data_sets_are_checked_at_load() -> None:
    cfg = load_simulation_config("simulate", ["split.keep_official=true", "split.natural_small_sites=keep"])
    assert cfg.split.keep_official is True and cfg.split.natural_small_sites == "keep"
    with pytest.raises(ConfigError, match="natural_small_sites"):
        load_simulation_config("simulate", ["split.natural_small_sites=merge"])
    with pytest.raises(ConfigError, match="keep_official"):
        load_simulation_config("simulate", ["split.keep_official=perhaps"])


def test_a_bad_enum_override_names_the_key_the_value_and_the_allowed_words() -> None:
    with pytest.raises(
        ConfigError, match=r"'fedsgd', expected one of \[fedavg, fedprox.*full_key: server.strategy.name"
    ):
        load_simulation_config("tiny", ["server.strategy.name=fedsgd"])


def test_an_override_of_a_removed_model_knob_names_it() -> None:
    with pytest.raises(ConfigError, match=r"Key 'autocast_bf16' not in 'ModelConfig'"):
        load_simulation_config("tiny", ["server.model.autocast_bf16=true"])


@pytest.mark.parametrize("name", ["simulate", "demo", "tiny"])
def test_the_demo_tiny_and_generic_configs_hold_out_validation_patients(name: str) -> None:
    assert load_simulation_config(name).split.val_fraction > 0  # operating points are chosen on them, never on test


def test_the_site_field_ablation_needs_the_centralized_baseline() -> None:
    loaded = load_simulation_config("tiny", ["baselines.no_site_fields=true"])
    assert loaded.baselines.no_site_fields is True
    with pytest.raises(ConfigError, match="baselines.centralized=true"):
        load_simulation_config("tiny", ["baselines.no_site_fields=true", "baselines.centralized=false"])
