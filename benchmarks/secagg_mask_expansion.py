"""Benchmark: SecAgg+ mask expansion for the default federated model (~30M parameters). Writes JSON.

Compares bcvlm's expansion (`bcvlm_model.privacy.mask_expansion.expand_masks`: HKDF-SHA256 + ChaCha20 keystream)
with Flower 1.42's `pseudo_rand_gen` (seed folded to 32 bits + NumPy Mersenne Twister) on the shapes of the
model's federated (trainable) arrays, with Flower's default modulus 2**32. In a SecAgg+ round a site expands one
self mask and one pairwise mask per neighbour; the server expands one self mask per surviving site and, for a
site lost after the key exchange, one pairwise mask per neighbour of it.

    python benchmarks/secagg_mask_expansion.py --repeats 5 --out secagg_mask_expansion.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bcvlm_client.flower_process import apply_flower_env_defaults

apply_flower_env_defaults()

MOD_RANGE = 2**32
FEDERATED_30M_MODEL: dict[str, Any] = {
    "image_encoder": {"trainable_stages": -1},
    "text_encoder": {"num_layers": 0, "trainable_layers": -1},
    "fusion": {"dim": 256, "heads": 8},
    "dropout": 0.0,
}
"""Same model as benchmarks/federation_round.py: EfficientNet-Lite0 and all MiniLM layers trainable, 256-d fusion."""


def model_shapes() -> list[tuple[int, ...]]:
    """Shapes of the default federated model's trainable arrays (what SecAgg+ masks), in upload order."""
    from omegaconf import OmegaConf

    from bcvlm_server.server_app import default_model_factory, trainable_arrays
    from bcvlm_server.server_config import ServerConfig

    cfg = OmegaConf.to_object(
        OmegaConf.merge(
            OmegaConf.structured(ServerConfig), {"model": FEDERATED_30M_MODEL, "dp_model": False, "run_dir": "unused"}
        )
    )
    return [array.shape for array in trainable_arrays(default_model_factory(cfg))]


def _time(expand: Callable[[], list[np.ndarray]], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        expand()
        times.append(time.perf_counter() - started)
    return times


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    from flwr.common.secure_aggregation.secaggplus_utils import pseudo_rand_gen

    from bcvlm_model.privacy.mask_expansion import MASK_PRG_NAME, expand_masks

    shapes = model_shapes()
    n_parameters = int(sum(np.prod(shape, dtype=np.int64) for shape in shapes))
    self_seed, shared_key = os.urandom(32), os.urandom(44)  # the two kinds of seed Flower's protocol expands
    load_before = os.getloadavg()
    ours = _time(lambda: expand_masks(self_seed, MOD_RANGE, shapes), args.repeats)
    flower = _time(lambda: pseudo_rand_gen(shared_key, MOD_RANGE, shapes), args.repeats)
    load_after = os.getloadavg()
    report = {
        "benchmark": "secagg_mask_expansion",
        "federated_parameters": n_parameters,
        "arrays": len(shapes),
        "mod_range": MOD_RANGE,
        "repeats": args.repeats,
        "bcvlm_expand_masks": {
            "prg": MASK_PRG_NAME.decode(),
            "median_s": round(statistics.median(ours), 4),
            "min_s": round(min(ours), 4),
            "all_s": [round(t, 4) for t in ours],
        },
        "flower_pseudo_rand_gen": {
            "prg": "32-bit folded seed + numpy MT19937",
            "median_s": round(statistics.median(flower), 4),
            "min_s": round(min(flower), 4),
            "all_s": [round(t, 4) for t in flower],
        },
        "site_masks_per_round_3_sites": 3,
        "machine": {
            "node": platform.node(),
            "cpu": _cpu_model(),
            "cpu_count": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in load_after],
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
