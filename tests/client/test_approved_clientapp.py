"""A site refuses app bundles it did not approve: a real center (loopback SuperLink, SuperExec, Fleet gateway) and a
real `bcvlm-client` site; the center submits crafted FABs whose ClientApp would write a marker file.

- `carries_code`: the FAB ships its own `evil_client.py` and names it as the clientapp;
- `names_other`: the FAB holds no code but names `probe_client:app`, a module the site could import (it is on the
  PYTHONPATH of every process here, so without the check the site WOULD run it and the marker would appear).

Both FABs name `probe_server:app` as their ServerApp (also on PYTHONPATH): it sends the site one train message and
writes down the reply, so the test sees what the server learns.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from flwr.proto.runtime_pb2 import AcquireTaskRequest  # pylint: disable=E0611
from flwr.supercore.error import ApiErrorCode
from flwr.supercore.runtime.runtime_http_client import RuntimeHttpClient

from bcvlm_client.flower_process import free_port, terminate_tree
from bcvlm_server.center_services import CenterServices, SuperExecLaunch
from bcvlm_server.deployment import FAB_TEMPLATE
from bcvlm_server.fleet_gateway import GatewaySettings
from bcvlm_server.superlink import FlowerControl, wait_for_nodes, write_run_config_toml
from bcvlm_testing.deployment_files import (
    client_command,
    loopback_certificates,
    loopback_site_connection,
    loopback_superlink_launch,
)
from bcvlm_testing.federation_sites import ready_site_fields
from bcvlm_testing.loopback import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

CRAFTED = ("carries_code", "names_other")

PROBE_SERVER = """
import json, time
from pathlib import Path
from flwr.app import Message, RecordDict
from flwr.serverapp import ServerApp

app = ServerApp()


@app.main()
def main(grid, context):
    nodes = []
    while not nodes:
        nodes = list(grid.get_node_ids())
        time.sleep(1)
    messages = [Message(RecordDict(), dst_node_id=node, message_type="train") for node in nodes]
    replies = list(grid.send_and_receive(messages, timeout=240))
    answers = [reply.error.reason if reply.has_error() else "content" for reply in replies]
    print("replies from the site:", answers)
    Path({report!r}).joinpath(context.run_config["probe"] + ".json").write_text(json.dumps(answers))
"""
MARKER_CLIENT = """
from pathlib import Path
Path({marker!r}).joinpath({name!r}).write_text("site ran code from the FAB")
from flwr.clientapp import ClientApp
app = ClientApp()
"""


def acquire_task_error(port: int) -> str:
    """What the site's SuperNode answers a local process that asks for a task without the SuperExec secret."""
    client = RuntimeHttpClient.from_server_address(
        f"127.0.0.1:{port}", insecure=True, root_certificates=None, interceptors=[]
    )
    try:
        client.AcquireTask(AcquireTaskRequest())
    except Exception as exc:  # noqa: BLE001 - the refusal's text is checked by the test
        return f"{exc} {getattr(getattr(exc, 'response', None), 'text', '')}"
    finally:
        client.close()
    return ""


def crafted_app(root: Path, name: str, clientapp: str, files: dict[str, str]) -> Path:
    folder = root / "apps" / name
    folder.mkdir(parents=True)
    text = FAB_TEMPLATE.read_text()
    text = text.replace('clientapp = "bcvlm_client.client_app:app"', f'clientapp = "{clientapp}"')
    text = text.replace('serverapp = "bcvlm_server.server_app:app"', 'serverapp = "probe_server:app"')
    (folder / "pyproject.toml").write_text(text + 'probe = ""\n')
    for file, body in files.items():
        (folder / file).write_text(body)
    return folder


@dataclass
class Observed:
    root: Path
    marker_dir: Path
    report_dir: Path
    run_ids: dict[str, int]
    run_logs: dict[str, str]
    runtime_without_secret_error: str

    def site_log(self) -> str:
        path = self.root / "state" / "logs" / "site.log"
        return path.read_text(errors="replace") if path.is_file() else ""

    def report(self, name: str) -> list[str]:
        return json.loads((self.report_dir / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Observed:
    root = tmp_path_factory.mktemp("fab_refusal")
    certs = loopback_certificates(root / "certs", generate_site_keys=["alpha"])
    marker_dir, report_dir, probes = root / "markers", root / "reports", root / "probes"
    for folder in (marker_dir, report_dir, probes):
        folder.mkdir()
    (probes / "probe_server.py").write_text(PROBE_SERVER.format(report=str(report_dir)))
    (probes / "probe_client.py").write_text(MARKER_CLIENT.format(marker=str(marker_dir), name="names_other"))
    mp = pytest.MonkeyPatch()
    mp.setenv("PYTHONPATH", os.pathsep.join([str(probes), os.environ.get("PYTHONPATH", "")]))
    center_home = root / "center"
    launch = loopback_superlink_launch(certs, center_home, free_port(), center_home / "superexec.secret")
    internal = f"127.0.0.1:{launch.port}"
    public_port = free_port()
    center = CenterServices(
        launch,
        SuperExecLaunch(
            internal, certs.ca_cert, center_home / "superexec.secret", center_home, center_home / "superexec.log"
        ),
        GatewaySettings(
            "127.0.0.1", public_port, f"https://{internal}", certs.ca_cert, certs.server_cert, certs.server_key
        ),
        center_home / "gateway.log",
    )
    site_yaml = root / "site.yaml"
    site_yaml.write_text(
        yaml.safe_dump(
            {  # real data and ledger: bcvlm-client checks both before it starts
                **loopback_site_connection(certs, "alpha", public_port),
                **ready_site_fields(root, state_dir=root / "state"),
            }
        )
    )
    site = None
    runtime_port = free_port()
    try:
        center.start()
        control = FlowerControl(root / "cli", internal, certs.ca_cert)
        control.register_site(certs.site_public_key("alpha"), "alpha")
        with open(root / "client.out", "wb") as log:
            site = subprocess.Popen(
                client_command(site_yaml, "--runtime-port", str(runtime_port)),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        assert wait_for_nodes(control, 1, 180) == 1, (root / "client.out").read_text()
        apps = {
            "carries_code": crafted_app(
                root,
                "carries_code",
                "evil_client:app",
                {"evil_client.py": MARKER_CLIENT.format(marker=str(marker_dir), name="carries_code")},
            ),
            "names_other": crafted_app(root, "names_other", "probe_client:app", {}),
        }
        run_ids = {}
        for name, folder in apps.items():
            run_ids[name] = control.submit_run(folder, write_run_config_toml(root / f"{name}.toml", {"probe": name}))
        wait_until(
            lambda: all((report_dir / f"{name}.json").is_file() for name in CRAFTED),
            600,
            "the probe ServerApps to record the site's replies",
            poll_s=2,
        )
        run_logs = {}
        for name, run_id in run_ids.items():
            run_logs[name] = control.save_run_log(run_id, root / f"run_{name}.log").read_text(errors="replace")
        return Observed(
            root=root,
            marker_dir=marker_dir,
            report_dir=report_dir,
            run_ids=run_ids,
            run_logs=run_logs,
            runtime_without_secret_error=acquire_task_error(runtime_port),
        )
    finally:
        if site is not None:
            terminate_tree(site.pid, grace_s=5.0)
            site.wait(timeout=30)
        center.stop()
        mp.undo()


@pytest.mark.parametrize("name", CRAFTED)
def test_nothing_from_a_crafted_fab_runs_at_the_site(observed: Observed, name: str) -> None:
    assert not (observed.marker_dir / name).exists()
    assert list(observed.marker_dir.iterdir()) == []


def test_a_fab_carrying_code_is_refused_and_the_server_is_told_why(observed: Observed) -> None:
    [reason] = observed.report("carries_code")
    assert "site refuses FAB" in reason and "carries code: evil_client.py" in reason


def test_a_fab_naming_another_clientapp_is_refused_and_the_server_is_told_why(observed: Observed) -> None:
    [reason] = observed.report("names_other")
    assert "site refuses FAB" in reason and "'probe_client:app'" in reason


@pytest.mark.parametrize("name", CRAFTED)
def test_the_run_log_at_the_center_says_why(observed: Observed, name: str) -> None:
    assert "site refuses FAB" in observed.run_logs[name], observed.run_logs[name][-2000:]


def test_the_site_log_says_why(observed: Observed) -> None:
    log = observed.site_log()
    assert "carries code: evil_client.py" in log
    assert "names clientapp 'probe_client:app'" in log


def test_a_local_process_without_the_site_secret_gets_no_task(observed: Observed) -> None:
    secret = observed.root / "state" / "superexec_auth.secret"
    assert secret.stat().st_mode & 0o077 == 0
    # Flower's answer when the SuperExec auth headers are missing or wrong: 401, RUNTIME_AUTHENTICATION_FAILED.
    assert "401 Unauthorized" in observed.runtime_without_secret_error
    assert f'"code":{int(ApiErrorCode.RUNTIME_AUTHENTICATION_FAILED)}' in observed.runtime_without_secret_error
