"""Benchmark: Flower 1.42's Shamir secret sharing (pure Python over GF(2^128)) at the share counts SecAgg+ uses for
50 and 200 sites; seconds per secret to split (each site, twice per SecAgg+ pass) and to combine (the server, once
per site and pass); prints JSON (and writes it with --out).

    OMP_NUM_THREADS=1 python benchmarks/secagg_shamir_cost.py --out benchmarks/results/secagg_shamir_cost.json

With every site sharing with all others (`secagg.num_shares: 1.0`) both costs grow with the sites, so the round's
total grows with their cube; a fixed neighbourhood (`secagg.num_shares: 51`, config `scale200`) keeps them constant.
"""

from __future__ import annotations

import argparse
import os
import time

from flwr.common.secure_aggregation.crypto.shamir import combine_shares, create_shares
from result_json import emit, machine_facts

CASES = [
    ("scale50: all 50 sites", 50),
    ("200 sites, all 200 (num_shares 1.0)", 200),
    ("scale200: 51 ring neighbours (num_shares 51)", 51),
]
SECRET_BYTES = 32
"""A SecAgg+ secret (the self-mask seed; the pairwise key is about as long)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threshold-fraction", type=float, default=0.67, help="as secagg.reconstruction_threshold")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    rows = []
    for label, shares in CASES:
        threshold = round(args.threshold_fraction * shares)
        started = time.perf_counter()
        made = create_shares(os.urandom(SECRET_BYTES), threshold, shares)
        split_s = time.perf_counter() - started
        started = time.perf_counter()
        combine_shares(made[:threshold])
        combine_s = time.perf_counter() - started
        rows.append(
            {
                "case": label,
                "shares": shares,
                "threshold": threshold,
                "split_seconds_per_secret": round(split_s, 2),
                "combine_seconds_per_secret": round(combine_s, 2),
            }
        )
    result = {
        "benchmark": "secagg_shamir_cost",
        "secret_bytes": SECRET_BYTES,
        "cases": rows,
        "machine": machine_facts(load_before),
    }
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
