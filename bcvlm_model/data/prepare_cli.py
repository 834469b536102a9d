"""`bcvlm prepare`: preprocess a data set (RSNA, VinDr, CBIS-DDSM, DICOM folder, CSV, synthetic) into a cache."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from typing import Optional, Sequence

from bcvlm_model.config_io import ConfigError, enum_choices, load_config
from bcvlm_model.data.errors import DataSourceError
from bcvlm_model.data.prepare import StrictRejectError, run_prepare
from bcvlm_model.data.preprocess_config import PreprocessConfig, parse_size
from bcvlm_model.data.source_config import DataSourceConfig, SourceKind


@dataclass
class PrepareConfig:
    """YAML schema of `bcvlm prepare --config`: the data source, the preprocessing, and run settings."""

    source: DataSourceConfig = field(default_factory=DataSourceConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    workers: int = 1
    strict: bool = False
    out: Optional[str] = None


def build_parser() -> argparse.ArgumentParser:
    """Command-line options; flags override the --config YAML."""
    parser = argparse.ArgumentParser(prog="bcvlm prepare", description=__doc__)
    parser.add_argument("--config", help="YAML with PrepareConfig fields (source:, preprocess:, workers, strict)")
    parser.add_argument("--source", dest="kind", choices=enum_choices(SourceKind))
    parser.add_argument("--root", help="data-set folder")
    parser.add_argument("--csv", help="table (rsna: train.csv; csv: the table; dicom_folder: a CSV to join)")
    parser.add_argument("--csv-files", nargs="*", help="CBIS-DDSM case-description CSVs")
    parser.add_argument("--out", help="output folder (cache/, manifest.csv, rejects.csv)")
    default = PreprocessConfig()
    parser.add_argument("--size", help=f"output size HxW (default {default.image_height}x{default.image_width})")
    parser.add_argument("--workers", type=int)
    parser.add_argument("--strict", action="store_true", help="any reject is fatal")
    parser.add_argument("--max-images", type=int, help="process at most N new images, then stop (resume later)")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("overrides", nargs="*", help="dotlist overrides, e.g. preprocess.crop=false")
    return parser


def config_from_args(args: argparse.Namespace) -> PrepareConfig:
    """PrepareConfig from --config, flags and dotlist overrides."""
    overrides = list(args.overrides)
    for key, value in (
        ("source.kind", args.kind),
        ("source.root", args.root),
        ("source.csv", args.csv),
        ("workers", args.workers),
        ("out", args.out),
    ):
        if value is not None:
            overrides.append(f"{key}={value}")
    if args.csv_files:
        overrides.append(f"source.csv_files=[{','.join(args.csv_files)}]")
    if args.size:
        height, width = parse_size(args.size)
        overrides += [f"preprocess.image_height={height}", f"preprocess.image_width={width}"]
    if args.strict:
        overrides.append("strict=true")
    return load_config(PrepareConfig, args.config, overrides)


def main(argv: Sequence[str]) -> int:
    """Entry point of `bcvlm prepare`; returns 0 on success, 1 on a fatal reject, 2 on a bad configuration."""
    args = build_parser().parse_args(list(argv))
    try:
        cfg = config_from_args(args)
        if not cfg.out:
            raise ConfigError("out: no output folder (--out)")
        summary = run_prepare(
            cfg.source,
            cfg.preprocess,
            cfg.out,
            workers=cfg.workers,
            strict=cfg.strict,
            progress=not args.quiet,
            max_new_images=args.max_images,
        )
    except (ConfigError, DataSourceError, ValueError) as exc:
        print(f"bcvlm prepare: {exc}", file=sys.stderr)
        return 2
    except StrictRejectError as exc:
        print(f"bcvlm prepare: {exc}", file=sys.stderr)
        return 1
    print(f"bcvlm prepare: {summary.describe()}")
    return 0
