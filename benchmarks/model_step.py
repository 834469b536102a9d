"""Benchmark: train-step time, inference time and peak memory per model kind, and the Opacus DP step vs the same
trainable set without DP. Prints JSON (and writes it with --out).

Each measurement runs in a fresh subprocess so peak memory is per configuration. Peak memory: on CUDA
`torch.cuda.max_memory_allocated`; on CPU the growth of the process's max resident set size
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`) over the measured phase, measured from the RSS just before it
(model built, batch made), plus the absolute max RSS.

    python benchmarks/model_step.py --height 512 --width 256 --batch 2 --device cpu
    python benchmarks/model_step.py --full-forward            # default VLM, one image at the default size, CPU
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from bcvlm_model.offline_env import apply_offline_env_defaults  # noqa: E402

apply_offline_env_defaults()  # before transformers is imported

import torch  # noqa: E402

from bcvlm_model.atomic_io import atomic_write_json  # noqa: E402
from bcvlm_model.data.preprocess_config import PreprocessConfig  # noqa: E402
from bcvlm_model.losses import masked_multitask_bce  # noqa: E402
from bcvlm_model.model import build_model  # noqa: E402
from bcvlm_model.model_config import ModelConfig, baseline_config  # noqa: E402
from bcvlm_model.model_inputs import MODEL_INPUT_KEYS  # noqa: E402
from bcvlm_model.privacy.dp_ready import make_dp_ready  # noqa: E402
from bcvlm_model.privacy.dp_ready_config import DPReadyConfig  # noqa: E402
from bcvlm_model.text import TextConfig  # noqa: E402
from bcvlm_model.text.collator import ReportCollator  # noqa: E402

MODELS = ("vlm", "image_only", "text_only", "late_concat", "vit")
DP_MODES = ("dp_off", "dp_on")


def _rss_mb() -> float:
    """Current resident set size in MiB (Linux /proc)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_batch(height: int, width: int, batch: int, device: torch.device) -> dict[str, Any]:
    """A batch as the ReportCollator makes it: random images, rendered reports of plausible metadata."""
    items = [
        {
            "image": torch.randn(1, height, width),
            "labels": torch.tensor([float(i % 2), float("nan")]),
            "image_id": f"bench-{i}",
            "metadata": {
                "age": 50.0 + i,
                "view": "CC" if i % 2 else "MLO",
                "laterality": "L",
                "implant": 0.0,
                "density": "B",
                "manufacturer": "Hologic",
                "machine_id": "49",
            },
        }
        for i in range(batch)
    ]
    collated = ReportCollator(TextConfig(), train=True)(items)
    return {key: value.to(device) if torch.is_tensor(value) else value for key, value in collated.items()}


def _timed(step: Callable[[], None], device: torch.device, warmup: int, steps: int, bf16: bool) -> list[float]:
    def run() -> None:
        # Precision is the caller's (as in the training loops): bf16 autocast around forward and backward.
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            step()

    for _ in range(warmup):
        run()
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def _memory_phase(device: torch.device, run: Callable[[], list[float]]) -> tuple[list[float], dict[str, float]]:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        times = run()
        return times, {
            "peak_mib": torch.cuda.max_memory_allocated(device) / 2**20,
            "peak_above_start_mib": (torch.cuda.max_memory_allocated(device) - before) / 2**20,
        }
    before = _rss_mb()
    times = run()
    return times, {"peak_above_start_mib": max(0.0, _max_rss_mb() - before), "max_rss_mib": _max_rss_mb()}


def _summary(times: list[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(times), "min_ms": min(times)}


def measure_model(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train step then inference of one model kind (train memory phase first: it has the higher peak)."""
    device = torch.device(args.device)
    cfg = baseline_config(name, ModelConfig())
    model = build_model(cfg).to(device)
    batch = make_batch(args.height, args.width, args.batch, device)
    inputs = {key: batch[key] for key in MODEL_INPUT_KEYS}
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        masked_multitask_bce(model(**inputs), batch["labels"]).backward()
        optimizer.step()

    def infer() -> None:
        with torch.no_grad():
            model(**inputs)

    model.train()
    train_times, train_memory = _memory_phase(
        device, lambda: _timed(train_step, device, args.warmup, args.steps, args.bf16)
    )
    model.eval()
    infer_times, infer_memory = _memory_phase(device, lambda: _timed(infer, device, args.warmup, args.steps, args.bf16))
    return {
        "model": name,
        "trainable_params": sum(p.numel() for p in trainable),
        "train": {**_summary(train_times), **train_memory},
        "inference": {**_summary(infer_times), **infer_memory},
    }


def measure_dp(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """The DP-ready VLM's train step with Opacus (dp_on) or with the same trainable set and no DP (dp_off)."""
    from opacus.grad_sample import GradSampleModule
    from opacus.optimizers import DPOptimizer

    device = torch.device(args.device)
    dp_cfg = DPReadyConfig(image_trainable_stages=args.dp_image_stages, text_trainable_layers=args.dp_text_layers)
    model = make_dp_ready(build_model(ModelConfig()), dp_cfg).to(device).train()
    batch = make_batch(args.height, args.width, args.batch, device)
    inputs = {key: batch[key] for key in MODEL_INPUT_KEYS}
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer: torch.optim.Optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    module: torch.nn.Module = model
    if mode == "dp_on":
        module = GradSampleModule(model, batch_first=True, loss_reduction="mean")
        optimizer = DPOptimizer(
            optimizer, noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=args.batch, loss_reduction="mean"
        )

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        masked_multitask_bce(module(**inputs), batch["labels"], reduction="example_mean").backward()
        optimizer.step()

    times, memory = _memory_phase(device, lambda: _timed(train_step, device, args.warmup, args.steps, args.bf16))
    return {
        "mode": mode,
        "image_trainable_stages": args.dp_image_stages,
        "text_trainable_layers": args.dp_text_layers,
        "trainable_params": sum(p.numel() for p in trainable),
        "train": {**_summary(times), **memory},
    }


def measure_full_forward(args: argparse.Namespace) -> dict[str, Any]:
    """Default VLM (full MiniLM, pretrained Lite0) on one image of the default preprocessing size + its rendered
    report: eval forward."""
    device = torch.device(args.device)
    model = build_model(ModelConfig()).to(device).eval()
    height, width = PreprocessConfig().image_height, PreprocessConfig().image_width
    batch = make_batch(height, width, 1, device)
    inputs = {key: batch[key] for key in MODEL_INPUT_KEYS}

    def infer() -> None:
        with torch.no_grad():
            logits = model(**inputs)
        assert logits.shape == (1, 2) and torch.isfinite(logits).all()

    times, memory = _memory_phase(device, lambda: _timed(infer, device, 0, max(1, args.steps), args.bf16))
    return {
        "model": "vlm",
        "input": f"1x1x{height}x{width}",
        "tokens": int(inputs["input_ids"].shape[1]),
        "inference": {**_summary(times), **memory},
    }


def _run_child(argv: list[str]) -> dict[str, Any]:
    output = subprocess.run([sys.executable, __file__, *argv], check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--no-dp", action="store_true", help="skip the DP comparison")
    parser.add_argument("--dp-image-stages", type=int, default=DPReadyConfig.image_trainable_stages)
    parser.add_argument("--dp-text-layers", type=int, default=DPReadyConfig.text_trainable_layers)
    parser.add_argument(
        "--full-forward", action="store_true", help="only the default VLM forward at the default image size"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from bcvlm_model.cpu_memory import keep_freed_memory

    keep_freed_memory()  # as every bcvlm command does (see bcvlm_model/cpu_memory.py)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        kind, _, name = args.child.partition(":")
        result = (
            {"model": measure_model, "dp": measure_dp}[kind](name, args)
            if kind != "full"
            else measure_full_forward(args)
        )
        print(json.dumps(result))
        return 0
    passthrough = [
        f"--height={args.height}",
        f"--width={args.width}",
        f"--batch={args.batch}",
        f"--device={args.device}",
        f"--steps={args.steps}",
        f"--warmup={args.warmup}",
        f"--dp-image-stages={args.dp_image_stages}",
        f"--dp-text-layers={args.dp_text_layers}",
        f"--threads={args.threads}",
    ] + (["--bf16"] if args.bf16 else [])
    device_name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"cpu ({os.cpu_count()} cores)"
    report: dict[str, Any] = {
        "device": device_name,
        "torch": torch.__version__,
        "bf16": args.bf16,
        "height": args.height,
        "width": args.width,
        "batch": args.batch,
        "memory_method": "cuda max_memory_allocated"
        if args.device.startswith("cuda")
        else "ru_maxrss growth over the phase (fresh process per configuration)",
    }
    if args.full_forward:
        for key in ("height", "width", "batch"):
            report.pop(key)
        report["full_forward"] = _run_child(passthrough + ["--child=full:"])
    else:
        names = [name for name in args.models.split(",") if name]
        unknown = [name for name in names if name not in MODELS]
        if unknown:
            parser.error(f"unknown models {unknown}; choose from {', '.join(MODELS)}")
        report["models"] = {name: _run_child(passthrough + [f"--child=model:{name}"]) for name in names}
        if "vlm" in report["models"] and "image_only" in report["models"]:
            report["vlm_over_image_only_train"] = (
                report["models"]["vlm"]["train"]["median_ms"] / report["models"]["image_only"]["train"]["median_ms"]
            )
        if not args.no_dp:
            report["dp"] = {mode: _run_child(passthrough + [f"--child=dp:{mode}"]) for mode in DP_MODES}
            report["dp_over_no_dp_train"] = (
                report["dp"]["dp_on"]["train"]["median_ms"] / report["dp"]["dp_off"]["train"]["median_ms"]
            )
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        atomic_write_json(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
