"""`bcvlm-client --site cfg.yaml`: validation errors name the key; the SuperNode is started with the site's settings."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import yaml
from flwr.common.config import parse_config_args

from bcvlm_client.cli import (
    HUNG_EXIT_CODE,
    last_error_lines,
    load_site_for_deployment,
    main,
    prepare_supernode,
    watch_supernode,
)
from bcvlm_client.site_config import load_site_config
from bcvlm_model.config_io import ConfigError
from bcvlm_server.certs import create_certificates, create_site_key
from bcvlm_server.flower_process import FlowerProcess, flower_environment
from federation_sites import make_site


@pytest.fixture()
def site_yaml(tmp_path: Path) -> Path:
    """A complete site folder: its own key pair, the CA certificate from `bcvlm certs`, a manifest, a cache dir, a YAML
    with relative paths."""
    keys = create_site_key(tmp_path / "site" / "certs", "hosp_a")
    bundle = create_certificates(tmp_path / "center" / "certs", ["localhost"], ["127.0.0.1"],
                                 {"hosp_a": keys.public_key}, ca_passphrase=b"test CA passphrase")
    make_site(tmp_path / "site", "prepared", n_train=12, n_test=6)  # prepared/manifest.csv + prepared/cache
    path = tmp_path / "site" / "site.yaml"
    path.write_text(yaml.safe_dump({
        "site_id": "hosp_a",
        "superlink_address": "127.0.0.1:9443",
        "ca_cert": str(bundle.site_ca_cert("hosp_a")),
        "private_key": os.path.relpath(keys.private_key, path.parent),
        "data": {"manifest": "prepared/manifest.csv", "cache_dir": "prepared/cache"},
        "state_dir": "state",
    }))
    return path


def _edit(path: Path, **changes: object) -> Path:
    raw = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        node = raw
        *parents, leaf = dotted.split("__")
        for part in parents:
            node = node[part]
        if value is None:
            node.pop(leaf)
        else:
            node[leaf] = value
    path.write_text(yaml.safe_dump(raw))
    return path


def test_relative_paths_resolve_next_to_the_yaml(site_yaml: Path, monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_site_for_deployment(site_yaml)
    assert cfg.data.manifest == str(site_yaml.parent / "prepared" / "manifest.csv")
    assert cfg.state_dir == str(site_yaml.parent / "state")
    assert cfg.private_key == str(tmp_path / "site" / "certs" / "supernode_auth_key")


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"unexpected_key": 1}, "unexpected_key"),
        ({"compute": {"batch_size": "eight"}}, "compute.batch_size"),
        ({"privacy": {"target_epsilon": -1.0}}, "privacy.target_epsilon"),
        ({"state_dir": None}, "state_dir"),
        ({"ca_cert": "missing/ca.crt"}, "ca_cert"),
        ({"private_key": None}, "private_key"),
        ({"data__manifest": "prepared/nope.csv"}, "data.manifest"),
        ({"data__cache_dir": "prepared/no_cache"}, "data.cache_dir"),
        ({"privacy": {"insecure_reproducible_noise": True}}, "privacy.insecure_reproducible_noise"),
        ({"privacy": {"accountant": "gdp"}}, "privacy.accountant"),
        ({"limits": {"model_kinds": ["resnet"]}}, "limits.model_kinds"),
        ({"approved_fab_sha256": ["not-a-hash"]}, "approved_fab_sha256"),
    ],
)
def test_bad_config_is_refused_naming_the_key(site_yaml: Path, changes: dict[str, object], key: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    _edit(site_yaml, **changes)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_site_for_deployment(site_yaml)
    assert main(["--site", str(site_yaml), "--check"]) == 2
    err = capsys.readouterr().err
    assert "invalid site config" in err and key in err


def test_check_accepts_a_valid_site_with_its_ledger(site_yaml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--site", str(site_yaml), "--init-ledger"]) == 0
    assert "privacy ledger created" in capsys.readouterr().out
    assert main(["--site", str(site_yaml), "--check"]) == 0
    out = capsys.readouterr().out
    assert "site config OK: site 'hosp_a'" in out
    assert "12 training images of 12 patients, 6 evaluation images of 6 patients" in out
    assert "cache 64x32: 12 training and 6 evaluation images" in out
    assert "18 DICOM files not found" in out
    assert "epsilon 0.000 of 8.0 spent" in out


def test_check_refuses_training_images_that_cannot_be_read(site_yaml: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--site", str(site_yaml), "--init-ledger"]) == 0
    for cached in (site_yaml.parent / "prepared" / "cache").glob("*/prepared-img-1.npy"):
        cached.unlink()  # a training image with neither a cached array nor a DICOM
    assert main(["--site", str(site_yaml), "--check"]) == 2
    assert "1 training images have neither a DICOM file nor a cached array (first: prepared-img-1)" in (
        capsys.readouterr().err)


def test_check_without_a_ledger_says_how_to_create_it(site_yaml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--site", str(site_yaml), "--check"]) == 2
    assert "--init-ledger" in capsys.readouterr().err
    assert not (site_yaml.parent / "state" / "privacy_ledger.json").exists()


def test_a_ledger_is_created_only_once(site_yaml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--site", str(site_yaml), "--init-ledger"]) == 0
    assert main(["--site", str(site_yaml), "--init-ledger"]) == 2
    assert "never reset" in capsys.readouterr().err


def test_check_refuses_a_site_with_no_training_rows(site_yaml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _edit(site_yaml, data__train_split="val")
    assert main(["--site", str(site_yaml), "--check"]) == 2
    err = capsys.readouterr().err
    assert "data.train_split" in err and "nothing to train on" in err


def test_check_refuses_a_delta_above_the_bound(site_yaml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _edit(site_yaml, privacy={"delta": 0.01})  # 12 training images: bound 1/120
    assert main(["--site", str(site_yaml), "--check"]) == 2
    assert "privacy.delta" in capsys.readouterr().err


def test_supernode_command_carries_the_site_settings(site_yaml: Path) -> None:
    cfg = load_site_for_deployment(site_yaml)
    launch = prepare_supernode(cfg, runtime_port=19123, max_retries=3)
    command = launch.command
    assert Path(command[0]).name == "flower-supernode"

    def value(flag: str) -> str:
        return command[command.index(flag) + 1]

    assert value("--superlink") == "127.0.0.1:9443"
    assert value("--root-certificates") == cfg.ca_cert
    assert value("--auth-supernode-private-key") == cfg.private_key
    assert value("--port") == "19123" and value("--host") == "127.0.0.1"
    assert value("--max-retries") == "3"
    assert "--insecure" not in command
    assert "--allow-runtime-dependency-installation" not in command
    # The site's own SuperExec (which checks every FAB) runs the apps, not one Flower starts.
    assert value("--isolation") == "process"
    assert value("--superexec-auth-secret-file") == str(Path(cfg.state_dir) / "superexec_auth.secret")
    # Flower parses the node config the way the SuperNode will, and the ClientApp can load the file it names.
    node_config = parse_config_args([value("--node-config")])
    assert node_config == {"site-config": str(launch.effective_config)}
    reloaded = load_site_config(node_config["site-config"])
    assert reloaded.data.manifest == cfg.data.manifest and reloaded.site_id == "hosp_a"
    env = flower_environment(launch.flwr_home)
    assert env["FLWR_TELEMETRY_ENABLED"] == "0"
    assert env["FLWR_DISABLE_UPDATE_CHECK"] == "1"
    assert env["FLWR_HOME"] == str(Path(cfg.state_dir) / "flwr_home")


def test_insecure_site_runs_without_tls_flags(site_yaml: Path) -> None:
    _edit(site_yaml, insecure=True, ca_cert=None, private_key=None)
    launch = prepare_supernode(load_site_for_deployment(site_yaml))
    assert "--insecure" in launch.command
    assert "--root-certificates" not in launch.command and "--auth-supernode-private-key" not in launch.command


def test_watchdog_restarts_a_supernode_whose_message_loop_died(tmp_path: Path) -> None:
    # The exact line Flower 1.42's SuperNode logs before its message loop ends and the process idles forever.
    fatal = ("\x1b[91mERROR \x1b[0m:     Server error '500 Internal Server Error' for url "
             "'https://127.0.0.1:9443/v1/fleet/pull-messages'")
    script = f"import sys, time; print({fatal!r}, flush=True); time.sleep(600)"
    log = tmp_path / "supernode.log"
    hung = FlowerProcess([sys.executable, "-c", script], flower_environment(tmp_path / "home"), log).start()
    started = time.monotonic()
    assert watch_supernode(hung, log, 0, poll_s=0.2) == HUNG_EXIT_CODE
    assert time.monotonic() - started < 60
    assert hung.process is not None and hung.process.poll() is not None
    assert "Server error '500" in last_error_lines(log)


def test_watchdog_returns_the_exit_code_of_a_supernode_that_exits(tmp_path: Path) -> None:
    log = tmp_path / "supernode.log"
    failing = FlowerProcess([sys.executable, "-c", "print('ERROR : Failed to receive message x'); raise SystemExit(3)"],
                            flower_environment(tmp_path / "home"), log).start()
    assert watch_supernode(failing, log, 0, poll_s=0.2) == 3
