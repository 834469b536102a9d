"""Flower processes started the way bcvlm starts them make no connection beyond loopback (strace of real processes);
the cheap walk of a supervised process's subtree finds what the scan of all of /proc finds."""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bcvlm_client.flower_process import (
    CHILDREN_FILES,
    FlowerProcess,
    flower_environment,
    flower_executable,
    free_port,
    process_subtree,
    process_tree,
    wait_for_port,
)
from bcvlm_server.certs import create_site_key
from bcvlm_server.superlink import CONNECTION_NAME, FlowerControl
from bcvlm_testing.deployment_files import client_command, loopback_certificates, loopback_superlink_launch
from bcvlm_testing.federation_sites import ready_site_fields

STRACE = shutil.which("strace")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(STRACE is None, reason="strace is not installed: connection attempts cannot be recorded"),
]

_CONNECT = re.compile(r"connect\(\d+, \{sa_family=(AF_\w+)(.*?)\}")
_INET_ADDRESS = re.compile(r'inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)"')
_PORT = re.compile(r"sin6?_port=htons\((\d+)\)")


def _traced(command: list[str], trace: Path) -> list[str]:
    """`command` under strace: every connect() of it and of all its descendants goes to `trace`."""
    assert STRACE is not None
    return [STRACE, "-f", "-qq", "-e", "trace=connect", "-o", str(trace), *command]


def network_connections(trace: Path) -> list[tuple[str, int, str]]:
    """(address, port, strace line) of each AF_INET/AF_INET6 connect() in a trace; unparsable ones fail the test."""
    found = []
    for line in trace.read_text().splitlines():
        match = _CONNECT.search(line)
        if match is None or match.group(1) not in ("AF_INET", "AF_INET6"):
            continue  # AF_UNIX (local sockets) and AF_UNSPEC (a UDP socket being disconnected) reach no network
        address, port = _INET_ADDRESS.search(match.group(2)), _PORT.search(match.group(2))
        assert address is not None and port is not None, f"cannot read the address of: {line}"
        found.append((address.group(1) or address.group(2), int(port.group(1)), line))
    return found


DNS_PORT = 53


def _stays_local(address: str, port: int) -> bool:
    """Loopback, and not a DNS query: a local resolver (e.g. 127.0.0.53) forwards the name looked up."""
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return (ip.is_loopback or (mapped is not None and mapped.is_loopback)) and port != DNS_PORT


def _flwr(args: list[str], flwr_home: Path, trace: Path) -> dict[str, object]:
    """A traced `flwr ARGS --format json` call with the environment bcvlm gives the `flwr` CLI."""
    done = subprocess.run(
        _traced([flower_executable("flwr"), *args, "--format", "json"], trace),
        env=flower_environment(flwr_home),
        cwd=flwr_home,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    return json.loads(done.stdout[done.stdout.find("{") :])


def test_flower_processes_connect_only_to_loopback(tmp_path: Path) -> None:
    """SuperLink, `bcvlm-client` with its SuperNode and SuperExec, and the `flwr` CLI, as bcvlm starts them."""
    site_key = create_site_key(tmp_path / "site" / "keys", "hosp_a")
    certs = loopback_certificates(tmp_path / "certs", {"hosp_a": site_key.public_key})
    traces = tmp_path / "traces"
    traces.mkdir()
    port = free_port()
    server_home = tmp_path / "center"
    launch = loopback_superlink_launch(certs, server_home, port)
    superlink = FlowerProcess(
        _traced(launch.command(), traces / "superlink"),
        flower_environment(server_home),
        launch.log_path,
        cwd=server_home,
    )
    site_dir = tmp_path / "site"
    site_dir.mkdir(exist_ok=True)
    site_yaml = site_dir / "site.yaml"
    site_yaml.write_text(
        yaml.safe_dump(
            {
                "site_id": "hosp_a",
                "superlink_address": f"127.0.0.1:{port}",
                "ca_cert": str(certs.site_ca_cert("hosp_a")),
                "private_key": str(site_key.private_key),
                **ready_site_fields(site_dir),
            }
        )
    )
    client = FlowerProcess(
        _traced(
            client_command(site_yaml, "--runtime-port", str(free_port()), "--max-restarts", "0"),
            traces / "client",
        ),
        flower_environment(site_dir / "client_home"),
        site_dir / "client.out",
    )
    try:
        superlink.start()
        wait_for_port("127.0.0.1", port, 120.0, superlink.process)
        FlowerControl(server_home, f"127.0.0.1:{port}", certs.ca_cert).write_connection_config()
        registered = _flwr(
            ["supernode", "register", str(certs.site_public_key("hosp_a")), CONNECTION_NAME],
            server_home,
            traces / "flwr_register",
        )
        assert registered.get("success"), registered
        client.start()
        deadline, online, polls = time.monotonic() + 240.0, False, 0
        while not online and time.monotonic() < deadline:
            time.sleep(3.0)
            polls += 1
            nodes = _flwr(["supernode", "list", CONNECTION_NAME], server_home, traces / f"flwr_list_{polls}")
            online = any(node.get("status") == "online" for node in nodes.get("nodes", []))  # type: ignore[union-attr]
        assert online, f"the site never came online:\n{client.log_text()[-3000:]}"
        time.sleep(5.0)  # a phone-home starts in a background thread at process start: give it time to show
    finally:
        client.stop()
        superlink.stop()

    connections = {trace.name: network_connections(trace) for trace in sorted(traces.iterdir())}
    # The recording works: the site's SuperNode and the CLI were seen reaching the SuperLink's port.
    assert any(port == p for _, p, _ in connections["client"]), connections["client"]
    assert any(port == p for _, p, _ in connections[f"flwr_list_{polls}"]), connections[f"flwr_list_{polls}"]
    outside = [
        f"{name}: {line}"
        for name, found in connections.items()
        for address, to_port, line in found
        if not _stays_local(address, to_port)
    ]
    assert not outside, "connection attempts beyond loopback:\n" + "\n".join(outside)


@pytest.mark.skipif(
    not CHILDREN_FILES, reason="the kernel lists no children per thread: process_subtree is process_tree"
)
def test_the_subtree_walk_finds_children_started_from_any_thread_and_grandchildren() -> None:
    script = (
        "import subprocess, threading, time\n"
        "subprocess.Popen(['sh', '-c', 'sleep 60 & sleep 60; true'])\n"
        "threading.Thread(target=lambda: (subprocess.Popen(['sleep', '60']), time.sleep(60))).start()\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 30
        while len(process_tree(parent.pid)) < 5 and time.monotonic() < deadline:  # parent, sh, 2 sleeps, 1 sleep
            time.sleep(0.1)
        assert len(process_tree(parent.pid)) == 5
        assert sorted(process_subtree(parent.pid)) == sorted(process_tree(parent.pid))
    finally:
        for pid in reversed(process_tree(parent.pid)):
            subprocess.run(["kill", "-9", str(pid)], check=False)
        parent.wait(timeout=10)
