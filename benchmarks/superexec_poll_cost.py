"""CPU an idle connected site costs, per SuperExec task-poll interval: a real loopback SuperLink (TLS, SuperNode
auth) and one real `bcvlm-client` site; CPU seconds of the site's processes and of the SuperLink over a quiet window.

    python benchmarks/superexec_poll_cost.py --intervals 0.1,0.5,1.0 --out benchmarks/results/superexec_poll_cost.json

Each interval gets a fresh SuperLink and site. The site runs with `FLWR_SUPEREXEC_TASK_POLL_INTERVAL` set to the
interval in place of bcvlm's default (`bcvlm_client.flower_process.SITE_SUPEREXEC_POLL_S`); the window starts once
the site is online and its forkserver has had time to load torch.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from result_json import emit, machine_facts

from bcvlm_client.flower_process import SITE_SUPEREXEC_POLL_S, free_port, process_tree, terminate_tree
from bcvlm_server.superlink import FlowerControl, SuperLink, client_address, wait_for_nodes
from bcvlm_testing.deployment_files import loopback_certificates, loopback_site_connection, loopback_superlink_launch
from bcvlm_testing.federation_sites import ready_site_fields

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SITE_WITH_INTERVAL = (
    "import sys\nfrom bcvlm_client import flower_process\n"
    "flower_process.FLOWER_ENV_DEFAULTS['FLWR_SUPEREXEC_TASK_POLL_INTERVAL'] = sys.argv.pop(1)\n"
    "from bcvlm_client.cli import main\nraise SystemExit(main())\n"
)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of the processes still alive among `pids` (from /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def idle_cost(interval_s: str, window_s: float, settle_s: float) -> dict[str, Any]:
    """Start a SuperLink and one site polling every `interval_s`; CPU seconds of each over `window_s` once idle."""
    root = Path(tempfile.mkdtemp(prefix="poll-cost-"))
    certs = loopback_certificates(root / "certs", generate_site_keys=["alpha"])
    port = free_port()
    superlink = SuperLink(loopback_superlink_launch(certs, root / "superlink", port)).start(120.0)
    site = None
    try:
        control = FlowerControl(root / "cli", client_address("127.0.0.1", port), certs.ca_cert)
        control.register_site(certs.site_public_key("alpha"), "alpha")
        site_yaml = root / "site.yaml"
        site_yaml.write_text(
            yaml.safe_dump(
                {
                    **loopback_site_connection(certs, "alpha", port),
                    **ready_site_fields(root, state_dir=root / "state"),
                }
            )
        )
        with open(root / "client.out", "wb") as log:
            site = subprocess.Popen(
                [sys.executable, "-c", SITE_WITH_INTERVAL, interval_s, "--site", str(site_yaml)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if wait_for_nodes(control, 1, 180) != 1:
            raise RuntimeError(f"the site did not come online:\n{(root / 'client.out').read_text()[-3000:]}")
        time.sleep(settle_s)
        site_pids, superlink_pids = process_tree(site.pid), process_tree(superlink.process.pid)
        site_before, superlink_before = cpu_seconds(site_pids), cpu_seconds(superlink_pids)
        time.sleep(window_s)
        site_cpu = cpu_seconds(site_pids) - site_before
        superlink_cpu = cpu_seconds(superlink_pids) - superlink_before
    finally:
        if site is not None:
            terminate_tree(site.pid, grace_s=5.0)
        superlink.stop()
        shutil.rmtree(root, ignore_errors=True)
    return {
        "interval_s": float(interval_s),
        "window_s": window_s,
        "site_processes": len(site_pids),
        "site_cpu_seconds": round(site_cpu, 2),
        "superlink_cpu_seconds": round(superlink_cpu, 2),
        "site_core_fraction": round(site_cpu / window_s, 4),
        "superlink_core_fraction": round(superlink_cpu / window_s, 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--intervals", default="0.1,0.5,1.0", help="comma-separated seconds (default 0.1,0.5,1.0)")
    parser.add_argument("--window-s", type=float, default=30.0, help="idle window measured (default 30)")
    parser.add_argument("--settle-s", type=float, default=15.0, help="wait after the site is online (default 15)")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    results = []
    for interval in args.intervals.split(","):
        print(f"poll interval {interval} s ...", file=sys.stderr, flush=True)
        results.append(idle_cost(interval.strip(), args.window_s, args.settle_s))
    emit(
        {
            "benchmark": "superexec_poll_cost",
            "command": "python benchmarks/superexec_poll_cost.py " + " ".join(argv or sys.argv[1:]),
            "default_interval_s": float(SITE_SUPEREXEC_POLL_S),
            "results": results,
            "machine": machine_facts(load_before),
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
