"""`bcvlm-server` without processes: config validation, the run directory it writes, the FAB and SuperLink command."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomli
import yaml
from flwr.cli.config_utils import load_and_validate
from flwr.common.config import parse_config_args

from bcvlm_model.config_io import ConfigError
from bcvlm_server.certs import create_site_key
from bcvlm_server.cli import main
from bcvlm_server.deployment import FAB_TEMPLATE, RunDirectory, load_for_resume, prepare_run_directory, superlink_launch
from bcvlm_server.deployment_config import load_deployment_config
from bcvlm_testing.deployment_files import loopback_certificates, write_server_yaml


@pytest.fixture()
def server_yaml(tmp_path: Path) -> Path:
    public_keys = {s: create_site_key(tmp_path / f"site_{s}", s).public_key for s in ("a", "b")}
    loopback_certificates(tmp_path / "certs", public_keys)
    return write_server_yaml(tmp_path, ("a", "b"), {"run_dir": "runs/r1", "rounds": 3, "secagg": {"enabled": True}})


def _edit(path: Path, section: str, key: str, value: object) -> None:
    raw = yaml.safe_load(path.read_text())
    raw[section][key] = value
    path.write_text(yaml.safe_dump(raw))


def test_fab_declares_the_installed_apps_and_the_run_config_keys() -> None:
    # check_module=True: Flower's own check that the components import from the installed packages.
    config, _ = load_and_validate(FAB_TEMPLATE, check_module=True)
    assert config["tool"]["flwr"]["app"]["components"] == {
        "serverapp": "bcvlm_server.server_app:app",
        "clientapp": "bcvlm_client.client_app:app",
    }
    assert set(config["tool"]["flwr"]["app"]["config"]) == {"server-config", "run-dir", "resume"}
    assert sorted(p.name for p in FAB_TEMPLATE.parent.iterdir()) == ["pyproject.toml"]  # no code, weights or data


def test_run_directory_holds_configs_app_and_run_config(server_yaml: Path) -> None:
    cfg = load_deployment_config(server_yaml)
    run_dir = prepare_run_directory(cfg, resume=False)
    assert run_dir.root == server_yaml.parent / "runs" / "r1"
    run_config = parse_config_args([str(run_dir.run_config)])
    assert run_config == {"server-config": str(run_dir.server_config), "run-dir": str(run_dir.root), "resume": False}
    declared = tomli.loads((run_dir.app_dir / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert set(run_config) <= set(declared)  # Flower refuses undeclared run-config keys
    server_cfg = yaml.safe_load(run_dir.server_config.read_text())
    assert server_cfg["rounds"] == 3 and server_cfg["run_dir"] == str(run_dir.root)
    # The recorded deployment config is what --resume uses.
    assert load_for_resume(run_dir.root).superlink.port == 9555
    with pytest.raises(ConfigError, match="--resume"):
        prepare_run_directory(cfg, resume=False)
    assert prepare_run_directory(cfg, resume=True).run_config.read_text().count("resume = true") == 1


def test_superlink_command_has_tls_auth_database_and_bind_address(server_yaml: Path) -> None:
    _edit(server_yaml, "superlink", "internal_port", 9556)
    cfg = load_deployment_config(server_yaml)
    launch = superlink_launch(cfg, RunDirectory(Path(cfg.federation.run_dir)))
    command = launch.command()

    def value(flag: str) -> str:
        return command[command.index(flag) + 1]

    assert value("--ssl-ca-certfile").endswith("certs/ca.crt")
    assert value("--ssl-certfile").endswith("certs/server.crt")
    assert value("--ssl-keyfile").endswith("certs/server.key")
    assert value("--database") == str(Path(cfg.federation.run_dir) / "superlink" / "state.db")
    assert (value("--host"), value("--port")) == ("127.0.0.1", "9556")  # loopback; 9555 is the gateway's
    assert "--enable-supernode-auth" in command and "--insecure" not in command
    assert "--disable-runtime-dependency-installation" in command
    assert value("--isolation") == "process"
    assert value("--superexec-auth-secret-file") == str(
        Path(cfg.federation.run_dir) / "superlink" / "superexec_auth.secret"
    )


def test_superlink_listens_on_loopback_even_for_a_wildcard_public_address(server_yaml: Path) -> None:
    _edit(server_yaml, "superlink", "host", "0.0.0.0")
    cfg = load_deployment_config(server_yaml)
    command = superlink_launch(cfg, RunDirectory(Path(cfg.federation.run_dir))).command()
    assert command[command.index("--host") + 1] == "127.0.0.1"


@pytest.mark.parametrize(
    ("section", "key", "value", "named"),
    [
        ("superlink", "server_key", "certs/missing.key", "superlink.server_key"),
        ("superlink", "port", 70000, "superlink.port"),
        ("superlink", "internal_port", 9555, "superlink.internal_port"),
        ("superlink", "control_address", "127.0.0.1:9555", "superlink.control_address"),
        ("superlink", "bogus", 1, "bogus"),
        ("federation", "strategy", {"name": "krum"}, "strategy.name"),
        ("federation", "rounds", "many", "rounds"),
    ],
)
def test_bad_config_names_the_key(
    server_yaml: Path, section: str, key: str, value: object, named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(server_yaml, section, key, value)
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_deployment_config(server_yaml)
    assert main(["--config", str(server_yaml), "--check"]) == 2
    assert named in capsys.readouterr().err


def test_missing_site_key_is_named(server_yaml: Path) -> None:
    raw = yaml.safe_load(server_yaml.read_text())
    raw["sites"][1]["public_key"] = "certs/sites/b/nope.pub"
    server_yaml.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"sites\[1\]\.public_key"):
        load_deployment_config(server_yaml)


def test_a_site_private_key_is_refused_in_place_of_its_public_key(server_yaml: Path) -> None:
    raw = yaml.safe_load(server_yaml.read_text())
    raw["sites"][0]["public_key"] = "site_a/supernode_auth_key"
    server_yaml.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"sites\[0\]\.public_key.*PRIVATE key"):
        load_deployment_config(server_yaml)


def test_superlink_has_no_plaintext_mode(server_yaml: Path) -> None:
    """TLS is always on at the center: there is no `insecure` setting to turn it off, for any bind address."""
    _edit(server_yaml, "superlink", "host", "0.0.0.0")
    _edit(server_yaml, "superlink", "insecure", True)
    with pytest.raises(ConfigError, match="insecure"):
        load_deployment_config(server_yaml)


def test_resume_needs_a_run_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--resume", str(tmp_path)]) == 2
    assert "not a bcvlm-server run directory" in capsys.readouterr().err
