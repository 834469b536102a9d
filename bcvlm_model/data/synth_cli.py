"""`bcvlm synth`: write the synthetic mammography cohort (DICOMs, RSNA-schema train.csv, oracle.csv)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

from bcvlm_model.config_io import ConfigError, enum_choices, load_config
from bcvlm_model.data.preprocess_config import parse_size
from bcvlm_model.data.synth.config import SynthConfig, TransferSyntax
from bcvlm_model.data.synth.generate import generate_cohort


def build_parser() -> argparse.ArgumentParser:
    """Command-line options; each overrides the matching SynthConfig field (or the --config YAML)."""
    parser = argparse.ArgumentParser(prog="bcvlm synth", description=__doc__)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--config", help="YAML with SynthConfig fields")
    parser.add_argument("--n-patients", type=int, help="patients (4 images each)")
    parser.add_argument("--size", help="stored image size HxW, e.g. 512x256")
    parser.add_argument("--sites", type=int, help="number of virtual hospitals (site_id 1..N)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--prevalence", type=float, help="per-breast malignancy prevalence")
    parser.add_argument("--calcification-prevalence", type=float)
    parser.add_argument("--lesion-contrast", type=float, help="mass/calcification strength multiplier")
    parser.add_argument("--transfer-syntax", choices=enum_choices(TransferSyntax))
    parser.add_argument("--workers", type=int)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def config_from_args(args: argparse.Namespace) -> SynthConfig:
    """SynthConfig from --config plus the flags given."""
    overrides = []
    mapping = {
        "n_patients": args.n_patients,
        "n_sites": args.sites,
        "seed": args.seed,
        "malignancy_prevalence": args.prevalence,
        "calcification_prevalence": args.calcification_prevalence,
        "lesion_contrast": args.lesion_contrast,
        "transfer_syntax": args.transfer_syntax,
        "workers": args.workers,
    }
    for key, value in mapping.items():
        if value is not None:
            overrides.append(f"{key}={value}")
    if args.size:
        height, width = parse_size(args.size)
        overrides += [f"height={height}", f"width={width}"]
    return load_config(SynthConfig, args.config, overrides)


def main(argv: Sequence[str]) -> int:
    """Entry point of `bcvlm synth`."""
    args = build_parser().parse_args(list(argv))
    try:
        cfg = config_from_args(args)
    except (ConfigError, ValueError) as exc:
        print(f"bcvlm synth: {exc}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    cohort = generate_cohort(cfg, args.out, progress=not args.quiet)
    seconds = time.perf_counter() - start
    print(
        f"bcvlm synth: {len(cohort)} images of {cfg.n_patients} patients at {cfg.height}x{cfg.width} in "
        f"{seconds:.1f} s -> {args.out} (malignancy {cohort['cancer'].mean():.1%}, "
        f"calcification {cohort['calcification'].mean():.1%})"
    )
    return 0
