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
from bcvlm_client.flower_process import FlowerProcess, flower_environment
from bcvlm_client.site_config import load_site_config
from bcvlm_model.config_io import ConfigError
from bcvlm_model.offline_env import OFFLINE_ENV_DEFAULTS
from bcvlm_server.certs import create_site_key
from bcvlm_testing.deployment_files import (
    client_command,
    loopback_certificates,
    loopback_site_connection,
    loopback_superlink_launch,
)
from bcvlm_testing.federation_sites import make_site, ready_site_fields
from bcvlm_testing.loopback import wait_until


@pytest.fixture()
def site_yaml(tmp_path: Path) -> Path:
    """A complete site folder: its own key pair, the CA certificate from `bcvlm certs`, a manifest, a cache dir, a YAML
    with relative paths."""
    keys = create_site_key(tmp_path / "site" / "certs", "hosp_a")
    bundle = loopback_certificates(tmp_path / "center" / "certs", {"hosp_a": keys.public_key})
    make_site(tmp_path / "site", "prepared", n_train=12, n_test=6)  # prepared/manifest.csv + prepared/cache
    path = tmp_path / "site" / "site.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "site_id": "hosp_a",
                "superlink_address": "127.0.0.1:9443",
                "ca_cert": str(bundle.site_ca_cert("hosp_a")),
                "private_key": os.path.relpath(keys.private_key, path.parent),
                "data": {"manifest": "prepared/manifest.csv", "cache_dir": "prepared/cache"},
                "state_dir": "state",
            }
        )
    )
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


def test_relative_paths_resolve_next_to_the_yaml(
    site_yaml: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
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
        ({"compute": {"num_threads": 0}}, "compute.num_threads"),
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
def test_bad_config_is_refused_naming_the_key(
    site_yaml: Path, changes: dict[str, object], key: str, capsys: pytest.CaptureFixture[str]
) -> None:
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
    # 2 of the 12 training patients are held out as the default validation split (none in the manifest)
    assert "10 training images of 10 patients, 6 evaluation images of 6 patients" in out
    assert "2 validation images of 2 patients" in out
    assert "cache 64x32: 10 training and 6 evaluation images" in out
    assert "18 DICOM files not found" in out
    assert "epsilon 0.000 of 8.0 spent" in out


def test_check_refuses_training_images_that_cannot_be_read(site_yaml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--site", str(site_yaml), "--init-ledger"]) == 0
    for cached in (site_yaml.parent / "prepared" / "cache").glob("*/prepared-img-1.npy"):
        cached.unlink()  # a training image with neither a cached array nor a DICOM
    assert main(["--site", str(site_yaml), "--check"]) == 2
    assert "1 training images have neither a DICOM file nor a cached array (first: prepared-img-1)" in (
        capsys.readouterr().err
    )


def test_check_without_a_ledger_says_how_to_create_it(site_yaml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--site", str(site_yaml), "--check"]) == 2
    assert "--init-ledger" in capsys.readouterr().err
    assert not (site_yaml.parent / "state" / "privacy_ledger.json").exists()


def test_a_ledger_is_created_only_once(site_yaml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--site", str(site_yaml), "--init-ledger"]) == 0
    assert main(["--site", str(site_yaml), "--init-ledger"]) == 2
    assert "never reset" in capsys.readouterr().err


def test_check_refuses_a_site_with_no_training_rows(site_yaml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _edit(site_yaml, data__train_split="unused")
    assert main(["--site", str(site_yaml), "--check"]) == 2
    err = capsys.readouterr().err
    assert "data.train_split" in err and "nothing to train on" in err


def test_check_refuses_a_delta_above_the_bound(site_yaml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _edit(site_yaml, privacy={"delta": 0.02})  # 10 training patients (2 of 12 held out for validation): bound 1/100
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
    assert {key: env[key] for key in OFFLINE_ENV_DEFAULTS} == OFFLINE_ENV_DEFAULTS
    assert env["FLWR_HOME"] == str(Path(cfg.state_dir) / "flwr_home")


def test_insecure_site_runs_without_tls_flags(site_yaml: Path) -> None:
    _edit(site_yaml, insecure=True, ca_cert=None, private_key=None)
    launch = prepare_supernode(load_site_for_deployment(site_yaml))
    assert "--insecure" in launch.command
    assert "--root-certificates" not in launch.command and "--auth-supernode-private-key" not in launch.command


def test_watchdog_restarts_a_supernode_whose_message_loop_died(tmp_path: Path) -> None:
    # The exact line Flower 1.42's SuperNode logs before its message loop ends and the process idles forever.
    fatal = (
        "\x1b[91mERROR \x1b[0m:     Server error '500 Internal Server Error' for url "
        "'https://127.0.0.1:9443/v1/fleet/pull-messages'"
    )
    script = f"import sys, time; print({fatal!r}, flush=True); time.sleep(600)"
    log = tmp_path / "supernode.log"
    hung = FlowerProcess([sys.executable, "-c", script], flower_environment(tmp_path / "home"), log).start()
    started = time.monotonic()
    assert watch_supernode(hung, log, 0, poll_s=0.2) == HUNG_EXIT_CODE
    assert time.monotonic() - started < 60
    assert hung.process is not None and hung.process.poll() is not None
    assert "Server error '500" in last_error_lines(log)


def test_watchdog_reports_the_admission_once_even_when_the_line_arrives_in_pieces(tmp_path: Path) -> None:
    # Flower 1.42's SuperNode line once the SuperLink activated it, written here in two pieces, then again.
    script = (
        "import sys, time\n"
        "sys.stdout.write('\\x1b[92mINFO \\x1b[0m:      SuperNode'); sys.stdout.flush(); time.sleep(0.6)\n"
        "print(' ID: 15619650606440220141', flush=True); time.sleep(0.6)\n"
        "print('INFO :      SuperNode ID: 15619650606440220141', flush=True); time.sleep(0.6)\n"
    )
    log = tmp_path / "supernode.log"
    admitted: list[float] = []
    node = FlowerProcess([sys.executable, "-c", script], flower_environment(tmp_path / "home"), log).start()
    assert watch_supernode(node, log, 0, poll_s=0.2, on_admitted=lambda: admitted.append(time.monotonic())) == 0
    assert len(admitted) == 1


def test_watchdog_reports_no_admission_for_a_refused_supernode(tmp_path: Path) -> None:
    refused = "ERROR :   Failed to activate SuperNode [code: 2004]"
    log = tmp_path / "supernode.log"
    node = FlowerProcess(
        [sys.executable, "-c", f"print({refused!r}); raise SystemExit(1)"], flower_environment(tmp_path / "home"), log
    ).start()
    admitted: list[int] = []
    assert watch_supernode(node, log, 0, poll_s=0.2, on_admitted=lambda: admitted.append(1)) == 1
    assert admitted == []


def test_watchdog_returns_the_exit_code_of_a_supernode_that_exits(tmp_path: Path) -> None:
    log = tmp_path / "supernode.log"
    failing = FlowerProcess(
        [sys.executable, "-c", "print('ERROR : Failed to receive message x'); raise SystemExit(3)"],
        flower_environment(tmp_path / "home"),
        log,
    ).start()
    assert watch_supernode(failing, log, 0, poll_s=0.2) == 3


# --- real Flower processes: a refused key, a killed bcvlm-client, a SuperNode that cannot reach its SuperLink ------------------------


class RealCenter:
    """A TLS + SuperNode-auth SuperLink on loopback (what `bcvlm-server` starts). A site rejoining a new center is
    part of the rehearsal (tests/server/test_cli_rehearsal_docs.py)."""

    def __init__(self, root: Path, sites: list[str]) -> None:
        from bcvlm_client.flower_process import free_port

        self.root = root
        self.certs = loopback_certificates(root / "certs", generate_site_keys=sites)
        self.port = free_port()
        self.superlink = None
        self.control = None

    def start(self) -> None:
        """Start the SuperLink with an empty database; no site key is registered yet."""
        from bcvlm_server.superlink import FlowerControl, SuperLink, client_address

        launch = loopback_superlink_launch(self.certs, self.root / "superlink", self.port)
        self.superlink = SuperLink(launch).start(120.0)
        self.control = FlowerControl(
            launch.flwr_home / "cli", client_address("127.0.0.1", self.port), self.certs.ca_cert
        )

    def register(self, site: str) -> None:
        assert self.control is not None
        self.control.register_site(self.certs.site_public_key(site), site)

    def stop(self) -> None:
        if self.superlink is not None:
            self.superlink.stop()
            self.superlink = None


def _site_yaml_for(center: RealCenter, root: Path, site: str) -> Path:
    (root / site).mkdir(parents=True)
    path = root / site / "site.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                **loopback_site_connection(center.certs, site, center.port),
                "compute": {"num_threads": 1},
                **ready_site_fields(root / site),
            }
        )
    )
    return path


def _start_client(site_yaml: Path, out: Path, *args: str):
    import subprocess

    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        client_command(site_yaml, *args),
        stdout=open(out, "ab"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )


def _fingerprint_of_pub_file(path: Path) -> str:
    """What `ssh-keygen -lf KEY.pub` prints as the SHA-256 fingerprint (computed from the .pub file's blob)."""
    import base64
    import hashlib

    blob = base64.b64decode(path.read_text().split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_refused_site_is_told_its_key_fingerprint_and_retries(tmp_path: Path) -> None:
    center = RealCenter(tmp_path, ["hosp_a"])
    site_yaml = _site_yaml_for(center, tmp_path, "hosp_a")
    out = tmp_path / "client.out"
    try:
        center.start()  # the key is never registered
        client = _start_client(site_yaml, out, "--restart-delay", "1", "--max-restarts", "1")
        client.wait(timeout=300)
    finally:
        center.stop()
    text = out.read_text()
    expected = (
        f"this site's key (SHA-256 fingerprint {_fingerprint_of_pub_file(center.certs.site_public_key('hosp_a'))})"
        " is not registered at the center: send `supernode_auth_key.pub` to the coordinating center"
    )
    assert text.count(expected) == 2, text  # the first start and the one retry
    assert "restarting the SuperNode in 1 s" in text
    assert client.returncode != 0
    assert list(tmp_path.rglob("superexec.log")) == []  # never admitted: no SuperExec, no torch import, at no start


def _listening(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR: connections the killed process had accepted linger in TIME_WAIT for a minute; they do not
        # hold the port for a new server (gRPC binds the same way), a listening socket still does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the process keeper needs Linux")
def test_sigkill_of_the_client_leaves_no_process_and_frees_the_runtime_port(tmp_path: Path) -> None:
    import signal

    from bcvlm_client.flower_process import free_port, process_tree

    center = RealCenter(tmp_path, ["hosp_a"])  # the site is admitted, so its SuperExec and forkserver run too
    site_yaml = _site_yaml_for(center, tmp_path, "hosp_a")
    port = free_port()

    def commands(client_pid: int) -> list[str]:
        found = []
        for pid in process_tree(client_pid):
            try:
                found.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                pass
        return found

    def gone(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return True
        return state[state.rfind(")") + 2 :].split()[0] == "Z"

    client = None
    try:
        center.start()
        center.register("hosp_a")
        client = _start_client(site_yaml, tmp_path / "client.out", "--runtime-port", str(port))
        wait_until(
            lambda: any("bcvlm_client.site_superexec" in c for c in commands(client.pid)) and _listening(port),
            120,
            "the SuperNode, its SuperExec and the runtime port",
        )
        tree = process_tree(client.pid)
        assert len(tree) >= 4  # bcvlm-client, keeper, SuperNode, SuperExec
        os.kill(client.pid, signal.SIGKILL)
        client.wait(timeout=10)
        wait_until(lambda: all(gone(pid) for pid in tree[1:]), 30, "the site's processes to end", poll_s=0.2)
        assert not _listening(port)
    finally:
        if client is not None and client.poll() is None:
            client.kill()  # the keeper takes the site's processes down with it
            client.wait(timeout=10)
        center.stop()


def test_a_supernode_that_exits_0_is_restarted(
    site_yaml: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Flower's SuperNode exits 0 (or 130) when a new SuperLink answers 401: that is no reason for a site to stay down.
    starts = tmp_path / "starts"
    fake = tmp_path / "flower-supernode"
    fake.write_text(f"#!/bin/sh\necho started >> {starts}\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setattr("bcvlm_client.cli.flower_executable", lambda name: str(fake))
    assert main(["--site", str(site_yaml), "--init-ledger"]) == 0
    assert main(["--site", str(site_yaml), "--restart-delay", "0", "--max-restarts", "2"]) == 1
    assert starts.read_text().count("started") == 3
    err = capsys.readouterr().err
    assert err.count("SuperNode exited with code 0") == 3 and "restarting the SuperNode in 0 s (restart 2/2)" in err


def test_documented_systemd_unit_restarts_the_client_whatever_its_exit_and_runs_a_valid_command() -> None:
    import configparser
    import re
    import shlex

    from bcvlm_client.cli import build_parser

    docs = (Path(__file__).resolve().parents[2] / "docs" / "deployment.md").read_text()
    blocks = re.findall(r"```ini\n(.*?)```", docs, flags=re.S)
    assert len(blocks) == 1, "docs/deployment.md should show exactly one systemd unit"
    unit = configparser.ConfigParser(interpolation=None)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read_string("\n".join(line.strip() for line in blocks[0].splitlines()))
    service = unit["Service"]
    # bcvlm-client restarts its SuperNode itself; systemd must bring bcvlm-client back after ANY end (a crash, an
    # OOM kill, or exit 0), which Restart=on-failure would not do.
    assert service["Restart"] == "always"
    assert service.get("KillSignal", "SIGTERM") == "SIGTERM"  # what bcvlm-client treats as the site's own stop
    program, *arguments = shlex.split(service["ExecStart"])
    assert Path(program).name == "bcvlm-client"
    args = build_parser().parse_args(arguments)
    assert args.site.endswith(".yaml") and not args.check
