"""Every example in site_configs/ validates against its schema, and becomes loadable once its files exist."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from bcvlm_client.cli import load_site_for_deployment
from bcvlm_client.site_config import SiteConfig, validate_site_config
from bcvlm_model.config_io import load_config
from bcvlm_model.data.prepare_cli import PrepareConfig
from bcvlm_server.certs import create_certificates, create_site_key
from bcvlm_server.deployment_config import ServerDeploymentConfig, load_deployment_config

SITE_CONFIGS = Path(__file__).resolve().parents[2] / "site_configs"
SITE_LAYOUTS = {
    "rsna_site": "rsna",
    "vindr_site": "vindr",
    "dicom_folder_site": "dicom_folder",
    "synthetic_site": "synthetic",
}


def test_the_examples_cover_the_four_site_layouts_and_the_server() -> None:
    names = {path.name for path in SITE_CONFIGS.glob("*.yaml")}
    expected = {f"{site}.yaml" for site in SITE_LAYOUTS} | {f"{site}.prepare.yaml" for site in SITE_LAYOUTS}
    assert expected | {"server.example.yaml"} == names


@pytest.mark.parametrize("site", sorted(SITE_LAYOUTS))
def test_site_example_validates_and_matches_its_prepare_config(site: str) -> None:
    cfg = validate_site_config(load_config(SiteConfig, SITE_CONFIGS / f"{site}.yaml"), check_paths=False)
    prepare = load_config(PrepareConfig, SITE_CONFIGS / f"{site}.prepare.yaml")
    assert prepare.source.kind == SITE_LAYOUTS[site]
    # The site trains on what its prepare step writes.
    assert prepare.out is not None
    assert Path(cfg.data.manifest) == Path(prepare.out) / "manifest.csv"
    assert cfg.data.cache_dir is not None and Path(cfg.data.cache_dir) == Path(prepare.out) / "cache"
    assert cfg.insecure is False and cfg.privacy.enabled is True
    assert cfg.privacy.delta < 1e-3


@pytest.mark.parametrize("site", sorted(SITE_LAYOUTS))
def test_site_example_loads_for_deployment_once_its_files_exist(site: str, tmp_path: Path) -> None:
    raw = yaml.safe_load((SITE_CONFIGS / f"{site}.yaml").read_text())
    # The site makes its key pair in certs/; the center's CA certificate arrives there too.
    keys = create_site_key(tmp_path / "certs", raw["site_id"])
    bundle = create_certificates(
        tmp_path / "center" / "certs",
        ["localhost"],
        [],
        {raw["site_id"]: keys.public_key},
        ca_passphrase=b"test CA passphrase",
    )
    shutil.copy(bundle.site_ca_cert(raw["site_id"]), tmp_path / "certs" / "ca.crt")
    raw["data"] = {**raw["data"], "manifest": "prepared/manifest.csv", "cache_dir": "prepared/cache"}
    raw["state_dir"] = "state"
    (tmp_path / "prepared" / "cache").mkdir(parents=True)
    (tmp_path / "prepared" / "manifest.csv").write_text("image_id\n")
    path = tmp_path / f"{site}.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg = load_site_for_deployment(path)
    assert cfg.ca_cert == str(tmp_path / "certs" / "ca.crt")
    assert cfg.private_key == str(tmp_path / "certs" / "supernode_auth_key")
    assert cfg.state_dir == str(tmp_path / "state")


def test_server_example_validates_and_loads_once_certificates_exist(tmp_path: Path) -> None:
    cfg = load_config(ServerDeploymentConfig, SITE_CONFIGS / "server.example.yaml")  # checks the federation too
    assert cfg.federation.secagg.enabled is True
    assert cfg.superlink.port == 9443
    assert cfg.federation.min_sites < len(cfg.sites)  # the quorum survives a lost site
    shutil.copy(SITE_CONFIGS / "server.example.yaml", tmp_path / "server.yaml")
    public_keys = {
        site.name: create_site_key(tmp_path / "received" / site.name, site.name).public_key for site in cfg.sites
    }
    create_certificates(
        tmp_path / "certs",
        ["superlink.example.org"],
        ["203.0.113.10"],
        public_keys,
        ca_passphrase=b"test CA passphrase",
    )
    loaded = load_deployment_config(tmp_path / "server.yaml")
    assert [Path(site.public_key).parent.name for site in loaded.sites] == [site.name for site in cfg.sites]
    assert loaded.federation.run_dir == str(tmp_path / "runs" / "federation-001")


def test_rehearsal_sites_are_prepared_with_the_preprocessing_their_server_asks_for() -> None:
    from bcvlm_model.data.preprocess_config import preprocess_config_hash

    folder = SITE_CONFIGS / "rehearsal"
    server = load_config(ServerDeploymentConfig, folder / "server.yaml")
    prepare = load_config(PrepareConfig, folder / "prepare.yaml")
    assert preprocess_config_hash(server.federation.preprocess) == preprocess_config_hash(prepare.preprocess)
    for site in server.sites:
        cfg = validate_site_config(load_config(SiteConfig, folder / f"{site.name}.yaml"), check_paths=False)
        assert Path(cfg.data.cache_dir) == Path(prepare.out) / "cache"
        assert cfg.data.decode_on_the_fly is False  # a mismatch would be declined, not decoded silently
