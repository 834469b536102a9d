"""Probe: how well the frozen image encoder's features tell a visible calcification cluster from none, by speck size.

Renders balanced synthetic images (half with a visible cluster, density, view, side and vendor drawn at random),
writes each as a vendor DICOM, runs the preprocessing at the demo size, takes the frozen EfficientNet-Lite0 tapped
maps (max and mean over positions) and scores a logistic regression with 5-fold cross-validation (pairs of images
kept in one fold). Each `--min-sigma-px` value sets `render.CALC_MIN_SIGMA_PX` (the speck-width floor) for one
run. Prints JSON (and writes it with --out) with the load average before and after.

    python benchmarks/calcification_probe.py --min-sigma-px 0.6,0.9,1.3 --images 240
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
from typing import Any

import numpy as np
import pydicom
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import bcvlm_model.data.synth.render as render
from bcvlm_model.atomic_io import atomic_write_json
from bcvlm_model.data.pipeline import preprocess_dataset
from bcvlm_model.data.preprocess_config import PreprocessConfig, parse_size
from bcvlm_model.data.synth.dicom_writer import ImageTags, build_dataset
from bcvlm_model.data.synth.sites import VENDORS
from bcvlm_model.encoders.image_backbone import build_image_backbone
from bcvlm_model.model_config import ImageEncoderConfig


def demo_images(n_images: int, height: int, width: int, lesion_contrast: float, seed: int) -> tuple[np.ndarray, ...]:
    """(preprocessed images [N, H, W], visible-cluster labels, pair ids): odd indices carry a cluster."""
    rng = np.random.default_rng(seed)
    vendors = sorted(VENDORS)
    preprocess = PreprocessConfig(image_height=height, image_width=width)
    images, labels = [], []
    for index in range(n_images):
        view, side = ("CC", "MLO")[rng.integers(2)], ("L", "R")[rng.integers(2)]
        latents = render.ImageLatents(view, side, int(rng.integers(4)), 0, 1.0, index % 2 == 1, lesion_contrast)
        attenuation = render.render_attenuation(latents, height, width, int(rng.integers(1 << 30)))
        vendor = VENDORS[vendors[rng.integers(len(vendors))]]
        buffer = io.BytesIO()
        build_dataset(attenuation, vendor, ImageTags("1", "2", "1", side, view, 60, False), "explicit").save_as(
            buffer, enforce_file_format=True
        )
        buffer.seek(0)
        images.append(preprocess_dataset(pydicom.dcmread(buffer), preprocess)[0])
        labels.append(index % 2)
    return np.stack(images), np.asarray(labels), np.arange(n_images) // 2


def encoder_features(images: np.ndarray) -> np.ndarray:
    """Max and mean over positions of every tapped map of the frozen, pretrained default image encoder."""
    backbone = build_image_backbone(ImageEncoderConfig()).eval()
    batch = (torch.from_numpy(images)[:, None] - 0.5) / 0.25  # PreprocessConfig's default normalisation
    rows = []
    with torch.no_grad():
        for start in range(0, len(batch), 32):
            maps = backbone(batch[start : start + 32])
            rows.append(torch.cat([torch.cat([m.amax(dim=(2, 3)), m.mean(dim=(2, 3))], 1) for m in maps], 1))
    return torch.cat(rows).numpy()


def probe_auc(features: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> float:
    """Cross-validated AUC of a regularised logistic regression on the features."""
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=2000))
    scores = cross_val_predict(model, features, labels, groups=groups, cv=GroupKFold(5), method="predict_proba")
    return float(roc_auc_score(labels, scores[:, 1]))


def main() -> None:
    """Run the probe for each speck-width floor and print the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-sigma-px", default="0.6,0.9,1.3", help="comma-separated speck-width floors (px)")
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--size", default="256x128")
    parser.add_argument("--lesion-contrast", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    height, width = parse_size(args.size)
    result: dict[str, Any] = {"size": args.size, "images": args.images, "load_before": os.getloadavg(), "runs": []}
    for floor in (float(v) for v in args.min_sigma_px.split(",")):
        render.CALC_MIN_SIGMA_PX = floor  # the knob under study; the same seed draws the same images otherwise
        started = time.perf_counter()
        images, labels, groups = demo_images(args.images, height, width, args.lesion_contrast, args.seed)
        auc = probe_auc(encoder_features(images), labels, groups)
        result["runs"].append(
            {"min_sigma_px": floor, "probe_auc": round(auc, 3), "seconds": time.perf_counter() - started}
        )
    result["load_after"] = os.getloadavg()
    print(json.dumps(result, indent=2))
    if args.out:
        atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
