"""Benchmark: DP fine-tuning epoch time with and without the frozen-feature cache, and the cache's effect on AUC.

The DP-ready default VLM (last image stage, projections, fusion and head train; text encoder frozen) trains one
epoch with Opacus on in-memory synthetic records, as a site does (`train_local`, Poisson sampling, augmented
reports). Without the cache every step runs the frozen EfficientNet stages and MiniLM; with it, the first epoch
fills the cache (image prefix up front, text per rendered report) and later epochs read it. Prints JSON (and
writes it with --out), with the load average before and after.

    python benchmarks/frozen_feature_cache.py --sizes 256x128,512x256 --out benchmarks/results/frozen_feature_cache_cpu.json
    python benchmarks/frozen_feature_cache.py --sizes 256x128,512x256 --image-trainable-stages 0 --no-augment \
        --out benchmarks/results/frozen_feature_cache_cpu_frozen_backbone.json   # the demo's DP setting
    python benchmarks/frozen_feature_cache.py --sizes 2048x1024 --device cuda --bf16 --records 64
    python benchmarks/frozen_feature_cache.py --auc          # fp16 vs fp32 cache vs no cache: AUC after DP training
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bcvlm_model.offline_env import apply_offline_env_defaults  # noqa: E402

apply_offline_env_defaults()  # before transformers is imported

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from bcvlm_model.atomic_io import atomic_write_json  # noqa: E402
from bcvlm_model.config_io import enum_choices  # noqa: E402
from bcvlm_model.data.preprocess_config import PreprocessConfig  # noqa: E402
from bcvlm_model.features.storage_dtype import FeatureDtype  # noqa: E402
from bcvlm_model.features.training_hook import frozen_feature_training  # noqa: E402
from bcvlm_model.model import build_model  # noqa: E402
from bcvlm_model.model_config import ModelConfig  # noqa: E402
from bcvlm_model.privacy.dp_ready import make_dp_ready  # noqa: E402
from bcvlm_model.privacy.dp_ready_config import DPReadyConfig  # noqa: E402
from bcvlm_model.privacy.dp_training import DPTrainState  # noqa: E402
from bcvlm_model.text import TextConfig  # noqa: E402
from bcvlm_model.text.collator import ReportCollator  # noqa: E402
from bcvlm_model.training.local_train_config import LocalTrainConfig  # noqa: E402
from bcvlm_model.training.loops import evaluate, train_local  # noqa: E402
from bcvlm_testing.blob_records import BlobRecords  # noqa: E402
from bcvlm_testing.federation_sites import tiny_model_config  # noqa: E402


def model_config(tiny: bool) -> ModelConfig:
    """The default VLM, or (tiny) the tests' tiny preset (precision: `train_local(bf16=)`)."""
    return tiny_model_config() if tiny else ModelConfig()


def text_config(augment: bool) -> TextConfig:
    if augment:
        return TextConfig()
    return TextConfig(paraphrase=False, shuffle_within_section=False, mask_probability=0.0)


def _loader(dataset: Dataset, batch: int, augment: bool, seed: int) -> DataLoader:
    collator = ReportCollator(text_config(augment), train=True, seed=seed)
    return DataLoader(
        dataset, batch_size=batch, shuffle=True, collate_fn=collator, generator=torch.Generator().manual_seed(seed)
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _epoch(module: torch.nn.Module, loader: DataLoader, args: argparse.Namespace, seed: int) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of one DP epoch; CPU time is less sensitive to other jobs."""
    device = torch.device(args.device)
    dp = DPTrainState(noise_multiplier=args.noise, max_grad_norm=1.0, delta=1e-5, insecure_seed=seed)
    _sync(device)
    started, started_cpu = time.perf_counter(), time.process_time()
    train_local(
        module,
        loader,
        LocalTrainConfig(local_steps=0, learning_rate=args.lr),
        dp=dp,
        device=device,
        bf16=args.bf16,
        seed=seed,
    )
    _sync(device)
    return time.perf_counter() - started, time.process_time() - started_cpu


def measure_size(height: int, width: int, args: argparse.Namespace, cache_root: Path) -> dict[str, Any]:
    """Plain and cached DP epochs at one image size (same model, data, sampling and noise)."""
    torch.manual_seed(0)
    base = make_dp_ready(build_model(model_config(args.tiny)), DPReadyConfig(args.image_trainable_stages, 0))
    dataset = BlobRecords(args.records, height, width, seed=1)
    preprocess = PreprocessConfig(image_height=height, image_width=width)
    plain_model = copy.deepcopy(base)
    plain_times = [
        _epoch(plain_model, _loader(dataset, args.batch, args.augment, 10 + epoch), args, epoch)
        for epoch in range(args.epochs)
    ]
    cached_model = copy.deepcopy(base)
    root = cache_root / f"{height}x{width}"
    started, started_cpu = time.perf_counter(), time.process_time()
    cached = frozen_feature_training(
        cached_model, _loader(dataset, args.batch, args.augment, 10), root, preprocess, args.storage, args.device
    )
    fill_seconds, fill_cpu = time.perf_counter() - started, time.process_time() - started_cpu
    cached_times = [_epoch(cached.module, cached.loader, args, 0)]
    for epoch in range(1, args.epochs):
        # a new round's loader, as a site builds it (new augmentation seed), through the same cache on disk
        again = frozen_feature_training(
            cached_model,
            _loader(dataset, args.batch, args.augment, 10 + epoch),
            root,
            preprocess,
            args.storage,
            args.device,
        )
        cached_times.append(_epoch(again.module, again.loader, args, epoch))
        cached = again
    entry_bytes = sum(path.stat().st_size for path in root.rglob("*.npz"))

    def steady(times: list[tuple[float, float]], column: int) -> float:
        return min(entry[column] for entry in (times[1:] or times))

    return {
        "size": f"{height}x{width}",
        "records": args.records,
        "batch": args.batch,
        "text_cached": cached.module.plan.text_cached,
        "plain_epoch_seconds": [wall for wall, _ in plain_times],
        "plain_epoch_process_cpu_seconds": [cpu for _, cpu in plain_times],
        "cache_fill_seconds": fill_seconds,
        "cache_fill_process_cpu_seconds": fill_cpu,
        "cached_epoch_seconds": [wall for wall, _ in cached_times],
        "cached_epoch_process_cpu_seconds": [cpu for _, cpu in cached_times],
        "speedup_steady_epoch_wall": steady(plain_times, 0) / steady(cached_times, 0),
        "speedup_steady_epoch_process_cpu": steady(plain_times, 1) / steady(cached_times, 1),
        "speedup_first_epoch_with_fill_wall": plain_times[0][0] / (fill_seconds + cached_times[0][0]),
        "text_hits_last_epoch": cached.collator.hits["text"],
        "text_misses_last_epoch": cached.collator.misses["text"],
        "cache_bytes": entry_bytes,
        "cache_bytes_per_record": entry_bytes / args.records,
    }


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC (Mann-Whitney, ties counted half)."""
    positive, negative = scores[labels == 1], scores[labels == 0]
    if not len(positive) or not len(negative):
        return float("nan")
    greater = (positive[:, None] > negative[None, :]).sum() + 0.5 * (positive[:, None] == negative[None, :]).sum()
    return float(greater / (len(positive) * len(negative)))


def measure_auc(args: argparse.Namespace, cache_root: Path) -> dict[str, Any]:
    """AUC on held-out records after the same DP training without the cache, with a float32 and a float16 cache."""
    height, width = args.auc_size
    torch.manual_seed(0)
    base = make_dp_ready(build_model(model_config(args.tiny)), DPReadyConfig(args.image_trainable_stages, 0))
    train = BlobRecords(args.auc_records, height, width, 1, args.auc_contrast)
    test = BlobRecords(args.auc_records, height, width, 2, args.auc_contrast)
    preprocess = PreprocessConfig(image_height=height, image_width=width)
    test_loader = DataLoader(test, batch_size=args.batch, collate_fn=ReportCollator(TextConfig()))
    results: dict[str, Any] = {
        "size": f"{height}x{width}",
        "train_records": len(train),
        "test_records": len(test),
        "blob_contrast": args.auc_contrast,
        "epochs": args.auc_epochs,
        "noise_multiplier": args.noise,
    }
    for variant in ("no_cache", "float32", "float16"):
        model = copy.deepcopy(base)
        for epoch in range(args.auc_epochs):
            loader = _loader(train, args.batch, args.augment, 100 + epoch)
            module = model
            if variant != "no_cache":
                cached = frozen_feature_training(
                    model, loader, cache_root / f"auc-{variant}", preprocess, variant, args.device
                )
                module, loader = cached.module, cached.loader
            _epoch(module, loader, args, 1000 + epoch)
        evaluation = evaluate(model, test_loader, device=args.device, bf16=args.bf16)
        results[variant] = {
            "auc_malignancy": _auc(evaluation.scores["malignancy"], evaluation.labels["malignancy"]),
            "mean_loss": evaluation.mean_loss,
        }
    results["auc_difference_float16_vs_no_cache"] = (
        results["float16"]["auc_malignancy"] - results["no_cache"]["auc_malignancy"]
    )
    results["auc_difference_float32_vs_no_cache"] = (
        results["float32"]["auc_malignancy"] - results["no_cache"]["auc_malignancy"]
    )
    return results


def _size(text: str) -> tuple[int, int]:
    height, _, width = text.lower().partition("x")
    return int(height), int(width)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256x128,512x256", help="comma-separated HxW ('' = no timing)")
    parser.add_argument("--records", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument(
        "--epochs", type=int, default=2, help="epochs timed per variant (steady = best after the first)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--storage", default=FeatureDtype.float16.value, choices=enum_choices(FeatureDtype))
    parser.add_argument("--no-augment", dest="augment", action="store_false", help="canonical reports (no paraphrase)")
    parser.add_argument("--noise", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--tiny", action="store_true", help="test-sized model (1 text layer, 32-d fusion)")
    parser.add_argument(
        "--image-trainable-stages",
        type=int,
        default=1,
        help="last backbone stages that train under DP (0 = the demo's setting: only projections, fusion, heads)",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    parser.add_argument("--auc", action="store_true", help="also measure AUC: no cache vs float32 vs float16 cache")
    parser.add_argument("--auc-size", type=_size, default=(256, 128))
    parser.add_argument("--auc-records", type=int, default=64)
    parser.add_argument("--auc-epochs", type=int, default=4)
    parser.add_argument("--auc-contrast", type=float, default=0.3, help="blob brightness (low = AUC not saturated)")
    parser.add_argument("--cache-dir", type=Path, help="where the caches go (default: a temporary folder, removed)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    from bcvlm_model.cpu_memory import keep_freed_memory

    keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    cache_root = args.cache_dir or Path(tempfile.mkdtemp(prefix="bcvlm-frozen-cache-"))
    report: dict[str, Any] = {
        "benchmark": "frozen_feature_cache",
        "device": args.device
        if args.device == "cpu" or not torch.cuda.is_available()
        else torch.cuda.get_device_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "bf16": args.bf16,
        "storage_dtype": args.storage,
        "text_augmentation": args.augment,
        "model": "tiny" if args.tiny else "default VLM (EfficientNet-Lite0, MiniLM-L6), text encoder frozen",
        "dp_image_trainable_stages": args.image_trainable_stages,
        "load_average_before": list(os.getloadavg()),
        "sizes": [],
    }
    try:
        for size in filter(None, args.sizes.split(",")):
            report["sizes"].append(measure_size(*_size(size), args, cache_root))
        if args.auc:
            report["auc"] = measure_auc(args, cache_root)
    finally:
        if args.cache_dir is None:
            shutil.rmtree(cache_root, ignore_errors=True)
    report["load_average_after"] = list(os.getloadavg())
    print(json.dumps(report, indent=2))
    if args.out:
        atomic_write_json(args.out, report)
    return report


if __name__ == "__main__":
    main()
