"""SiteConfig YAML validation: unknown keys, wrong types, missing values and missing paths name the key."""

from __future__ import annotations

import pytest
import yaml

from bcvlm_client.site_config import load_site_config
from bcvlm_model.config_io import ConfigError


def _write(tmp_path, payload) -> str:
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(payload))
    return str(path)


@pytest.fixture
def valid(tmp_path) -> dict:
    for name in ("manifest.csv", "ca.crt", "site.key"):
        (tmp_path / name).write_text("x")
    (tmp_path / "cache").mkdir()
    return {
        "site_id": "hospital-a",
        "ca_cert": str(tmp_path / "ca.crt"),
        "private_key": str(tmp_path / "site.key"),
        "data": {"manifest": str(tmp_path / "manifest.csv"), "cache_dir": str(tmp_path / "cache")},
        "privacy": {"target_epsilon": 6.0, "delta": 1e-5},
        "state_dir": str(tmp_path / "state"),
    }


def test_a_valid_site_loads(tmp_path, valid) -> None:
    cfg = load_site_config(_write(tmp_path, valid))
    assert cfg.site_id == "hospital-a" and cfg.privacy.target_epsilon == 6.0 and cfg.compute.batch_size == 8


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda p: p.update(unknown_key=1), "unknown_key"),
        (
            lambda p: (
                p["compute"].update(batch_size="eight") if "compute" in p else p.update(compute={"batch_size": "eight"})
            ),
            "batch_size",
        ),
        (lambda p: p.pop("state_dir"), "state_dir"),
        (lambda p: p["data"].update(manifest="/nonexistent/manifest.csv"), "data.manifest"),
        (lambda p: p["privacy"].update(delta=2.0), "privacy.delta"),
        (lambda p: p.pop("ca_cert"), "ca_cert"),
    ],
    ids=["unknown", "wrong-type", "missing", "missing-path", "out-of-range", "no-ca-without-insecure"],
)
def test_bad_site_configs_name_the_key(tmp_path, valid, edit, key) -> None:
    edit(valid)
    with pytest.raises(ConfigError, match=key):
        load_site_config(_write(tmp_path, valid))


@pytest.mark.parametrize("address", ["127.0.0.1:9092", "127.8.9.10:9092", "localhost:9092", "[::1]:9092"])
def test_insecure_is_allowed_to_a_loopback_superlink(tmp_path, valid, address) -> None:
    valid.update(insecure=True, superlink_address=address, ca_cert=None, private_key=None)
    assert load_site_config(_write(tmp_path, valid)).insecure is True


@pytest.mark.parametrize(
    "address",
    ["superlink.example.org:9443", "10.0.0.5:9443", "0.0.0.0:9443", "[2001:db8::1]:9443", "localhost.example.org:9443"],
)
def test_insecure_is_refused_for_a_remote_superlink(tmp_path, valid, address) -> None:
    valid.update(insecure=True, superlink_address=address)
    with pytest.raises(ConfigError, match="key 'insecure'.*only allowed for a SuperLink on this machine"):
        load_site_config(_write(tmp_path, valid))


def test_no_cache_needs_decoding_on_the_fly_allowed_explicitly(tmp_path, valid) -> None:
    del valid["data"]["cache_dir"]
    with pytest.raises(ConfigError, match=r"data\.cache_dir.*decode_on_the_fly"):
        load_site_config(_write(tmp_path, valid))
    valid["data"]["decode_on_the_fly"] = True
    assert load_site_config(_write(tmp_path, valid)).data.decode_on_the_fly is True


def test_a_bad_accountant_fails_at_load_naming_the_key_and_the_allowed_values(tmp_path, valid) -> None:
    valid["privacy"]["accountant"] = "gdp"
    with pytest.raises(ConfigError, match=r"key 'privacy.accountant'.*'gdp'.*rdp, prv"):
        load_site_config(_write(tmp_path, valid))


def test_an_unknown_model_kind_in_the_limits_fails_at_load(tmp_path, valid) -> None:
    valid["limits"] = {"model_kinds": ["vlm", "resnet"]}
    with pytest.raises(ConfigError, match=r"limits.model_kinds.*'resnet'.*vlm, image_only, text_only, late_concat"):
        load_site_config(_write(tmp_path, valid))


def test_an_out_of_range_batch_size_fails_at_load_naming_the_key(tmp_path, valid) -> None:
    valid["compute"] = {"batch_size": 0}
    with pytest.raises(ConfigError, match=r"key 'compute.batch_size': must be >= 1, got 0"):
        load_site_config(_write(tmp_path, valid))
