"""The rehearsal of docs/deployment.md §9, run as documented: keys made at the three synthetic hospitals (only the
.pub files reach the center, whose CA key is encrypted outside the folder it hands out), one center and the three
hospitals on loopback, 2 rounds with DP-SGD and SecAgg+, the Control API refused through the public port, the
hospitals' FAB check in their logs, a hospital killed after round 1, then a new run that the running hospitals join,
with `bcvlm-server status` and `bcvlm predict` on the first run's result while the new run starts.

The commands are taken from the docs' text. Two deviations, both outside the commands: the rehearsal folder is a
temporary one instead of /tmp/bcvlm-rehearsal, and the shipped configs' port 9443 is replaced by a free port (so
the test cannot collide with anything listening on 9443). The hospitals start once the center has printed that it
registered their keys (earlier, each is refused and waits out its restart delay; that path is tested in
tests/client/test_cli_client.py). The hospitals run at a lower CPU priority: on a 2-core
machine a CPU-starved SuperLink can hit Flower's SQLite lock timeout. Each hospital's setup commands (ledger, then
check) and the center's check run at the same time, as at four machines, each lane in the documented order: one
command at a time leaves a core idle, as most of each command is a single-threaded interpreter importing torch.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from bcvlm_client.flower_process import free_port, process_tree
from bcvlm_model.atomic_io import read_json
from bcvlm_testing.loopback import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

REPO = Path(__file__).resolve().parents[2]
HOSPITALS = ("hospital_a", "hospital_b", "hospital_c")
KILLED = "hospital_c"
KEYS = (
    "bcvlm certs site-key --out hospital_a/keys --site hospital_a",
    "bcvlm certs site-key --out hospital_b/keys --site hospital_b",
    "bcvlm certs site-key --out hospital_c/keys --site hospital_c",
    "export BCVLM_CA_PASSPHRASE='rehearsal only, not a secret'",
    "bcvlm certs --out certs --server-name localhost"
    " --site-key hospital_a=hospital_a/keys/supernode_auth_key.pub"
    " --site-key hospital_b=hospital_b/keys/supernode_auth_key.pub"
    " --site-key hospital_c=hospital_c/keys/supernode_auth_key.pub",
)
SETUP = (
    "bcvlm synth --out synth --n-patients 36 --size 64x32 --sites 3 --seed 0",
    "bcvlm prepare --config prepare.yaml",
    "python make_site_manifests.py",
    "bcvlm-client --site hospital_a.yaml --init-ledger",
    "bcvlm-client --site hospital_b.yaml --init-ledger",
    "bcvlm-client --site hospital_c.yaml --init-ledger",
    "bcvlm-server --config server.yaml --check",
    "bcvlm-client --site hospital_a.yaml --check",
    "bcvlm-client --site hospital_b.yaml --check",
    "bcvlm-client --site hospital_c.yaml --check",
)
SERVER = "bcvlm-server --config server.yaml"
CLIENT = "bcvlm-client --site {}.yaml"
CONTROL_THROUGH_GATEWAY = (
    "curl -s -o /dev/null -w '%{http_code}\\n' --cacert certs/ca.crt -X POST "
    "https://localhost:9443/v1/control/list-runs"
)
FAB_VERDICT = "grep 'running FAB' state/hospital_a/logs/site.log"
STATUS = "bcvlm-server status runs/rehearsal-1"
PREDICT = (
    "bcvlm predict --checkpoint runs/rehearsal-1/rounds/round-0002/checkpoint --input hospital_a/manifest.csv "
    "--out predictions.csv"
)
NEW_RUN = "bcvlm-server --config server.yaml federation.run_dir=runs/rehearsal-2 federation.rounds=1"


def documented_commands() -> set[str]:
    """Every line of the bash blocks in the rehearsal section of docs/deployment.md."""
    docs = (REPO / "docs" / "deployment.md").read_text()
    section = docs.split("## 9. Rehearsal", 1)[1]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    # A command continued with a trailing backslash counts as one line, its parts joined by one space.
    joined = [re.sub(r"\s*\\\n\s*", " ", block) for block in blocks]
    return {line.strip() for block in joined for line in block.splitlines() if line.strip()}


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}


def _run(command: str, cwd: Path, timeout_s: float = 600.0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, shell=True, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout_s)
    assert done.returncode == 0, f"`{command}` exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def setup_lanes() -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """SETUP split into what comes first (data for all) and one lane per machine (each hospital, the center), each
    in the documented order."""
    lanes = [tuple(c for c in SETUP if f"--site {h}.yaml" in c) for h in HOSPITALS]
    lanes.append(tuple(c for c in SETUP if c.startswith("bcvlm-server")))
    in_lanes = {c for lane in lanes for c in lane}
    shared = tuple(c for c in SETUP if c not in in_lanes)
    assert list(shared) == list(SETUP[: len(shared)]), "the shared commands must all come before the lanes' ones"
    return shared, lanes


def _run_lanes(lanes: list[tuple[str, ...]], cwd: Path, logs: Path, timeout_s: float = 900.0) -> None:
    """Run each lane's commands one after the other in its own shell, the lanes at the same time; all must pass."""
    started = []
    for index, lane in enumerate(lanes):
        log = logs / f"setup_lane_{index}.out"
        with log.open("wb") as out:
            process = subprocess.Popen(
                "set -e\n" + "\n".join(lane), shell=True, cwd=cwd, env=_env(), stdout=out, stderr=subprocess.STDOUT
            )
        started.append((lane, log, process))
    for lane, log, process in started:
        code = process.wait(timeout=timeout_s)
        assert code == 0, f"`{' && '.join(lane)}` exited {code}:\n{log.read_text(errors='replace')[-4000:]}"


def _start(command: str, cwd: Path, log: Path, niceness: int = 0) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command,
        shell=True,
        cwd=cwd,
        env=_env(),
        stdout=open(log, "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=(lambda: os.nice(niceness)) if niceness else None,
    )


def _wait_for_registration(server: subprocess.Popen[bytes], output: Path) -> None:
    """Until `bcvlm-server` has printed that it registered every hospital's key; fail if it ended first."""
    wait_until(
        lambda: output.read_text().count("registered as node") == len(HOSPITALS) or server.poll() is not None,
        600,
        f"the center ({output.name}) to register the hospitals' keys",
    )
    assert server.poll() is None, output.read_text()[-3000:]


def _completed(run_dir: Path) -> int:
    state = run_dir / "state.json"
    return int(read_json(state)["last_completed_round"]) if state.is_file() else 0


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_the_documented_rehearsal_works_as_written(tmp_path: Path) -> None:
    documented = documented_commands()
    copy_line = "cp -r site_configs/rehearsal /tmp/bcvlm-rehearsal && cd /tmp/bcvlm-rehearsal"
    for command in (
        copy_line,
        *KEYS,
        *SETUP,
        SERVER,
        *(CLIENT.format(h) for h in HOSPITALS),
        CONTROL_THROUGH_GATEWAY,
        FAB_VERDICT,
        STATUS,
        PREDICT,
        NEW_RUN,
    ):
        assert command in documented, f"not in docs/deployment.md §9: {command}"
    folder = tmp_path / "bcvlm-rehearsal"
    _run(copy_line.replace("/tmp/bcvlm-rehearsal", str(folder)), cwd=REPO)
    port = str(free_port())
    for config in folder.glob("*.yaml"):
        config.write_text(config.read_text().replace("9443", port))
    shared, lanes = setup_lanes()
    _run("set -e\n" + "\n".join((*KEYS, *shared)), cwd=folder)  # one terminal: the exported passphrase carries over
    _run_lanes(lanes, cwd=folder, logs=tmp_path)

    # Keys never travelled: each private key exists once, at its hospital, 0600; the CA key is encrypted, outside
    # certs/ (what the center hands out), which holds no private key but the center's own TLS key.
    for hospital in HOSPITALS:
        key = folder / hospital / "keys" / "supernode_auth_key"
        assert key.stat().st_mode & 0o777 == 0o600
        assert (folder / "certs" / "sites" / hospital / "supernode_auth_key.pub").read_text() == (
            folder / hospital / "keys" / "supernode_auth_key.pub"
        ).read_text()
    handed_out_private = [
        path.relative_to(folder)
        for path in (folder / "certs").rglob("*")
        if path.is_file() and "PRIVATE KEY" in path.read_text(errors="replace")
    ]
    assert handed_out_private == [Path("certs/server.key")], handed_out_private
    assert (folder / "ca_private" / "ca.key").read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")

    processes: list[subprocess.Popen[bytes]] = []
    try:
        server = _start(SERVER, folder, tmp_path / "server.out")
        processes.append(server)
        # Started before the center registers their keys, the hospitals are refused and sit out a restart delay.
        _wait_for_registration(server, tmp_path / "server.out")
        clients = {h: _start(CLIENT.format(h), folder, tmp_path / f"{h}.out", niceness=10) for h in HOSPITALS}
        processes.extend(clients.values())
        run_1 = folder / "runs" / "rehearsal-1"
        wait_until(lambda: _completed(run_1) >= 1 or server.poll() is not None, 1200, "round 1")
        assert server.poll() is None, (tmp_path / "server.out").read_text()[-3000:]
        assert _run(CONTROL_THROUGH_GATEWAY.replace("9443", port), cwd=folder).stdout.strip() == "404"
        assert (
            "it carries no code and names the installed bcvlm_client.client_app:app"
            in _run(FAB_VERDICT, cwd=folder).stdout
        )
        killed_tree = process_tree(clients[KILLED].pid)
        os.killpg(clients[KILLED].pid, signal.SIGKILL)  # the shell and bcvlm-client: a crash, no clean stop
        clients[KILLED].wait(timeout=30)
        assert server.wait(timeout=1200) == 0, (tmp_path / "server.out").read_text()[-3000:]

        # The run: 2 rounds, round 2 without the killed hospital, checkpoints, ledgers, per-site outcomes.
        assert _completed(run_1) == 2
        names = read_json(run_1 / "sites.json")
        round_2 = read_json(run_1 / "rounds" / "round-0002" / "metrics.json")
        outcomes = {names[node]: outcome["outcome"] for node, outcome in round_2["site_outcomes"].items()}
        assert round_2["status"] == "trained" and outcomes["hospital_a"] == outcomes["hospital_b"] == "trained"
        assert outcomes.get(KILLED, "failed") == "failed"
        for server_round in (1, 2):
            assert (run_1 / "rounds" / f"round-{server_round:04d}" / "checkpoint" / "model.safetensors").is_file()
        for hospital in HOSPITALS:
            ledger = read_json(folder / "state" / hospital / "privacy_ledger.json")
            assert 0.0 < ledger["epsilon_spent"] <= 8.0 + 1e-6
        time.sleep(2)
        assert not [
            pid
            for pid in killed_tree
            if Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"
        ]
        # A new run: hospital_c comes back, the running hospitals join by themselves. Meanwhile the center's operator
        # looks at the first run (status, predict) from another terminal: both only read runs/rehearsal-1.
        second = _start(NEW_RUN, folder, tmp_path / "server2.out")
        processes.append(second)
        # hospital_c comes back once the new center registered the keys, as the hospitals did for the first run.
        _wait_for_registration(second, tmp_path / "server2.out")
        clients[KILLED] = _start(CLIENT.format(KILLED), folder, tmp_path / f"{KILLED}.out", niceness=10)
        processes.append(clients[KILLED])

        status = _run(STATUS, cwd=folder).stdout
        assert "round 2 trained" in status and "hospital_a trained" in status
        _run(PREDICT, cwd=folder)
        predictions = pd.read_csv(folder / "predictions.csv")
        assert len(predictions) > 0

        code = second.wait(timeout=1800)
        run_2 = folder / "runs" / "rehearsal-2"
        assert _completed(run_2) == 1, (tmp_path / "server2.out").read_text()[-3000:]
        names_2 = read_json(run_2 / "sites.json")
        metrics = read_json(run_2 / "rounds" / "round-0001" / "metrics.json")
        joined = {names_2[node]: outcome["outcome"] for node, outcome in metrics["site_outcomes"].items()}
        assert set(joined) == set(HOSPITALS), joined
        for hospital in set(HOSPITALS) - {KILLED}:  # still running: their own SuperNode came back at the new center
            assert "restarting the SuperNode" in (tmp_path / f"{hospital}.out").read_text()
        assert set(joined.values()) <= {"trained", "declined"}, joined
        assert code == (3 if metrics["status"] == "failed" else 0), (tmp_path / "server2.out").read_text()[-3000:]
        assert all(client.poll() is None for client in clients.values())
    finally:
        for process in reversed(processes):
            _stop(process)
        shutil.rmtree(folder / "synth", ignore_errors=True)
