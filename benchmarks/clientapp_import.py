"""Benchmark: what a fresh ClientApp process pays before a non-training message (a SecAgg+ key stage): seconds to
import the site's ClientApp module in a new interpreter, the modules it loads, and whether torch or OmegaConf are
among them; prints JSON (and writes it with --out).

    OMP_NUM_THREADS=1 python benchmarks/clientapp_import.py --repeat 5 --out benchmarks/results/clientapp_import.json

Flower 1.42 starts one `flwr-clientapp` process per message and SecAgg+ stage (about five per site and round), and
each imports the ClientApp module; only the process that trains needs torch and the model.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from result_json import emit, machine_facts

PROBE = """
import json, sys, time
started = time.perf_counter()
import bcvlm_client.client_app
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "modules": len(sys.modules),
                  "torch": "torch" in sys.modules, "omegaconf": "omegaconf" in sys.modules}))
"""


def one_import() -> dict:
    """Import the ClientApp module in a fresh interpreter and return what it measured."""
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--label", default="", help="free text stored with the result, e.g. the commit")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    runs = [one_import() for _ in range(args.repeat)]
    result = {
        "benchmark": "clientapp_import",
        "label": args.label,
        "module": "bcvlm_client.client_app",
        "median_import_seconds": round(statistics.median(run["seconds"] for run in runs), 2),
        "import_seconds": [round(run["seconds"], 2) for run in runs],
        "modules_loaded": runs[0]["modules"],
        "torch_loaded": any(run["torch"] for run in runs),
        "omegaconf_loaded": any(run["omegaconf"] for run in runs),
        "machine": machine_facts(load_before),
    }
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
