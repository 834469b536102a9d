"""`bcvlm predict`: command-line front end of clinical inference (argument parsing, output, exit codes)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from bcvlm_model import TASKS
from bcvlm_model.inference.aggregation import AGGREGATIONS
from bcvlm_model.inference.device import DEVICE_CHOICES
from bcvlm_model.inference.writers import output_format, write_predictions


def build_parser() -> argparse.ArgumentParser:
    """The `bcvlm predict` argument parser."""
    parser = argparse.ArgumentParser(
        prog="bcvlm predict",
        description="Predict malignancy and suspicious calcification for mammography exams with a bcvlm checkpoint. "
        "Writes per-image, per-breast and per-exam probabilities and binary calls at the checkpoint's "
        "operating point; files that cannot be used are listed with a reason.",
    )
    parser.add_argument("--checkpoint", required=True, help="checkpoint folder (model.safetensors + config.json)")
    parser.add_argument("--input", required=True, help="folder of DICOM files (searched recursively) or a manifest CSV")
    parser.add_argument(
        "--metadata",
        default=None,
        help="optional CSV overriding DICOM-tag metadata; key column patient_id, study_id or image_id; "
        "value columns such as age, implant, manufacturer, density",
    )
    parser.add_argument("--out", required=True, help="output file: .csv (plus <stem>.skipped.csv) or .json")
    parser.add_argument("--heatmaps", default=None, metavar="DIR", help="write Grad-CAM PNG overlays here")
    parser.add_argument("--heatmap-task", default=TASKS[0], choices=TASKS, help="task the heatmaps explain")
    parser.add_argument("--aggregation", default="mean", choices=AGGREGATIONS, help="images -> breast (default mean)")
    parser.add_argument(
        "--exam-aggregation",
        default="max",
        choices=AGGREGATIONS,
        help="breasts -> exam (default max: an exam is as suspicious as its worse breast)",
    )
    parser.add_argument("--batch-size", type=int, default=4, help="images per forward pass (default 4)")
    parser.add_argument(
        "--device",
        default="auto",
        choices=DEVICE_CHOICES,
        help="auto = CUDA with bf16 autocast when present, else CPU (default)",
    )
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast on a GPU")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes decoding DICOMs")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser


def predict_command(argv: Sequence[str]) -> int:
    """Entry point of `bcvlm predict`; returns 0 on success, 1 when no image could be predicted, 2 on bad arguments."""
    parser = build_parser()
    args = parser.parse_args(list(argv))
    try:
        output_format(args.out)
    except ValueError as exc:
        parser.error(str(exc))
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.metadata is not None and not Path(args.metadata).is_file():
        parser.error(f"--metadata file not found: {args.metadata}")
    from bcvlm_model.inference.prediction import PredictOptions, predict

    options = PredictOptions(
        aggregation=args.aggregation,
        exam_aggregation=args.exam_aggregation,
        batch_size=args.batch_size,
        device=args.device,
        allow_bf16=not args.fp32,
        heatmap_dir=args.heatmaps,
        heatmap_task=args.heatmap_task,
        workers=args.workers,
        progress=not args.no_progress,
    )
    try:
        result = predict(args.checkpoint, args.input, args.metadata, options)
    except (FileNotFoundError, ValueError) as exc:
        print(f"bcvlm predict: {exc}", file=sys.stderr)
        return 2
    written = write_predictions(result, args.out)
    n_images, n_exams, n_skipped = len(result.images), len(result.exams), len(result.skipped)
    print(
        f"bcvlm predict: {n_images} image(s) in {n_exams} exam(s) predicted, {n_skipped} file(s) skipped; "
        f"wrote {', '.join(str(path) for path in written)}"
    )
    for item in result.skipped:
        print(f"  skipped {item.path}: {item.reason}", file=sys.stderr)
    return 0 if n_images else 1
