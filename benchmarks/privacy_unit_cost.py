"""Benchmark: the DP-SGD step under patient-level against image-level privacy, same model, data and batch size.

Both runs train the default DP-ready VLM with `train_local` through the real loader factory and Opacus, on cached
synthetic images with `--images-per-patient` views per patient. Patient level adds the per-patient summation of
per-image gradients before clipping; its batches vary more in size (whole patients are sampled). Prints JSON and
writes it with --out.

    python benchmarks/privacy_unit_cost.py --height 256 --width 128 --steps 6 --out benchmarks/results/privacy_unit_cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bcvlm_client.flower_process import apply_flower_env_defaults  # noqa: E402

apply_flower_env_defaults()  # offline model hub, no telemetry: the one set of defaults every bcvlm process uses

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from bcvlm_model.atomic_io import atomic_write_json  # noqa: E402
from bcvlm_model.data.cache import cached_array_path, record_cache_config, save_cached_array  # noqa: E402
from bcvlm_model.data.manifest import MANIFEST_COLUMNS  # noqa: E402
from bcvlm_model.data.preprocess_config import PreprocessConfig  # noqa: E402
from bcvlm_model.model_config import ModelConfig  # noqa: E402
from bcvlm_model.privacy.dp_ready_config import DPReadyConfig  # noqa: E402
from bcvlm_model.privacy.dp_training import DPTrainState  # noqa: E402
from bcvlm_model.privacy.federated_model import build_federated_model  # noqa: E402
from bcvlm_model.privacy.privacy_unit import PrivacyUnit  # noqa: E402
from bcvlm_model.text import TextConfig  # noqa: E402
from bcvlm_model.training.loaders import build_loader  # noqa: E402
from bcvlm_model.training.local_train_config import LocalTrainConfig  # noqa: E402
from bcvlm_model.training.loops import train_local  # noqa: E402


def synthetic_rows(cache: Path, preprocess: PreprocessConfig, patients: int, views: int) -> pd.DataFrame:
    """Cached random images, `views` per patient, half the patients malignant."""
    rng = np.random.default_rng(0)
    record_cache_config(cache, preprocess)
    rows = []
    for patient in range(patients):
        for view in range(views):
            image_id = f"p{patient}-v{view}"
            image = rng.uniform(0, 1, (preprocess.image_height, preprocess.image_width)).astype(np.float32)
            save_cached_array(cached_array_path(cache, preprocess, image_id), image)
            row = {column: None for column in MANIFEST_COLUMNS}
            row.update(
                source="synthetic",
                site_id="bench",
                patient_id=f"P{patient}",
                study_id=f"S{patient}",
                image_id=image_id,
                path="missing.dcm",
                laterality="LR"[view % 2],
                view=("CC", "MLO")[view // 2 % 2],
                age=50.0,
                density="B",
                implant=0.0,
                manufacturer="Hologic",
                machine_id="1",
                malignancy=float(patient % 2),
                calcification=float("nan"),
                split="train",
                oracle_malignancy=float("nan"),
                oracle_calcification=float("nan"),
            )
            rows.append(row)
    return pd.DataFrame(rows)


def time_unit(unit: PrivacyUnit, rows: pd.DataFrame, cache: Path, preprocess: PreprocessConfig, args) -> dict[str, Any]:
    model_cfg = ModelConfig()
    model = build_federated_model(model_cfg, DPReadyConfig())
    loader = build_loader(
        rows,
        preprocess,
        TextConfig(),
        model_cfg,
        cache_dir=cache,
        batch_size=args.batch,
        train=True,
        seed=0,
        privacy_unit=unit,
    )
    dp = DPTrainState(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5)
    cfg = LocalTrainConfig(local_steps=1, optimizer="sgd", learning_rate=0.05)
    train_local(model, loader, cfg, dp=dp)  # warm-up: first-call allocations and hook set-up
    seconds = []
    images = 0
    for _ in range(args.steps):
        result = train_local(model, loader, cfg, dp=dp)
        seconds.append(result.seconds)
        images += result.num_examples
    return {
        "unit": unit.value,
        "records": len(loader.dataset),
        "sample_rate": 1 / len(loader),
        "median_step_s": round(statistics.median(seconds), 4),
        "mean_step_s": round(statistics.mean(seconds), 4),
        "images_per_step": round(images / args.steps, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--patients", type=int, default=64)
    parser.add_argument("--images-per-patient", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8, help="expected images per batch (both units)")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    preprocess = PreprocessConfig(image_height=args.height, image_width=args.width)
    with tempfile.TemporaryDirectory() as folder:
        cache = Path(folder) / "cache"
        rows = synthetic_rows(cache, preprocess, args.patients, args.images_per_patient)
        started = time.perf_counter()
        results = [time_unit(unit, rows, cache, preprocess, args) for unit in (PrivacyUnit.image, PrivacyUnit.patient)]
    image, patient = results
    report = {
        "benchmark": "privacy_unit_cost",
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            "torch_threads": torch.get_num_threads(),
        },
        "config": {
            "height": args.height,
            "width": args.width,
            "patients": args.patients,
            "images_per_patient": args.images_per_patient,
            "batch_images": args.batch,
            "steps": args.steps,
            "model": "default VLM, default DP-ready trainable set",
        },
        "image_level": image,
        "patient_level": patient,
        "patient_over_image_step_time": round(patient["median_step_s"] / image["median_step_s"], 3),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(report, indent=2))
    if args.out:
        atomic_write_json(args.out, report)


if __name__ == "__main__":
    main()
