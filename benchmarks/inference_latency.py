"""Per-exam inference latency (4 views + report text, batch 4) of the default VLM vs the image-only model; prints JSON."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any, Callable, Sequence

import torch

from bcvlm_model.data.preprocess_config import PreprocessConfig
from bcvlm_model.inference.device import resolve_device
from bcvlm_model.model import build_model
from bcvlm_model.model_config import ModelConfig, baseline_config
from bcvlm_model.text import TextConfig
from bcvlm_model.text.collator import ReportCollator

EXAM_VIEWS = (("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO"))


def exam_items(height: int, width: int, seed: int = 0) -> list[dict[str, Any]]:
    """One screening exam as dataset items: 4 normalised random images and typical metadata."""
    generator = torch.Generator().manual_seed(seed)
    return [
        {
            "image": torch.randn(1, height, width, generator=generator),
            "metadata": {
                "age": 58.0,
                "implant": 0.0,
                "view": view,
                "laterality": side,
                "manufacturer": "HOLOGIC, Inc.",
                "machine_id": "Selenia Dimensions",
                "density": None,
                "site_id": "1",
            },
            "labels": torch.full((2,), float("nan")),
            "image_id": f"{side}{view}",
        }
        for side, view in EXAM_VIEWS
    ]


def time_exam(
    model: torch.nn.Module,
    collator: ReportCollator,
    items: list[dict[str, Any]],
    device: torch.device,
    bf16: bool,
    repeats: int,
    warmup: int,
) -> dict[str, list[float]]:
    """Wall-clock and process-CPU milliseconds of collate (render + tokenize) + forward for one exam, per repeat."""

    def once() -> None:
        batch = collator(items)
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            model(
                batch["image"].to(device),
                batch["input_ids"].to(device),
                batch["attention_mask"].to(device),
                batch["token_type_ids"].to(device),
                batch["position_ids"].to(device),
            )
        if device.type == "cuda":
            torch.cuda.synchronize()

    return _repeat(once, repeats, warmup)


def _repeat(step: Callable[[], None], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Wall time, and CPU time of this process (all threads: less sensitive to other jobs on a shared machine)."""
    for _ in range(warmup):
        step()
    wall, cpu = [], []
    for _ in range(repeats):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        step()
        wall.append((time.perf_counter() - start_wall) * 1000.0)
        cpu.append((time.process_time() - start_cpu) * 1000.0)
    return {"wall_ms": wall, "process_cpu_ms": cpu}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    default = PreprocessConfig()
    size = f"{default.image_height}x{default.image_width}"
    parser.add_argument("--size", default=size, help=f"image HxW (default: the preprocessing's, {size})")
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    args = parser.parse_args(argv)
    from bcvlm_model.cpu_memory import keep_freed_memory

    keep_freed_memory()  # as every bcvlm command does (see bcvlm_model/cpu_memory.py)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    height, width = (int(v) for v in args.size.lower().split("x"))
    chosen = resolve_device(args.device)
    collator = ReportCollator(TextConfig(), train=False)
    items = exam_items(height, width)
    results: dict[str, Any] = {}
    for name in ("vlm", "image_only"):
        torch.manual_seed(0)
        model = build_model(baseline_config(name, ModelConfig())).to(chosen.device).eval()
        timings = time_exam(model, collator, items, chosen.device, chosen.bf16, args.repeats, args.warmup)
        results[name] = {
            "wall_ms_per_exam_median": statistics.median(timings["wall_ms"]),
            "process_cpu_ms_per_exam_median": statistics.median(timings["process_cpu_ms"]),
            **timings,
        }
        del model
    print(
        json.dumps(
            {
                "benchmark": "inference_latency",
                "device": chosen.description,
                "gpu": torch.cuda.get_device_name(0) if chosen.device.type == "cuda" else None,
                "cpu_threads": torch.get_num_threads(),
                "cpu_count": os.cpu_count(),
                "image_size": [height, width],
                "batch": len(items),
                "models": results,
                "load_average_1min": os.getloadavg()[0],
                "vlm_over_image_only_wall": results["vlm"]["wall_ms_per_exam_median"]
                / results["image_only"]["wall_ms_per_exam_median"],
                "vlm_over_image_only_process_cpu": results["vlm"]["process_cpu_ms_per_exam_median"]
                / results["image_only"]["process_cpu_ms_per_exam_median"],
                "measures": "report render + tokenize + forward of one 4-view exam (batch 4); DICOM decode not included",
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
