"""Write the synthetic cohort: DICOM files under train_images/, an RSNA-schema train.csv and an oracle.csv."""

from __future__ import annotations

import io
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from bcvlm_model.atomic_io import atomic_write_json, atomic_write_text
from bcvlm_model.config_io import config_to_dict
from bcvlm_model.data.adapters.rsna import RSNA_COLUMNS  # the synthetic train.csv is exactly what the adapter reads
from bcvlm_model.data.synth.cohort import DENSITY_LEVELS, sample_cohort
from bcvlm_model.data.synth.config import SynthConfig
from bcvlm_model.data.synth.dicom_writer import ImageTags, build_dataset, write_dataset
from bcvlm_model.data.synth.render import ImageLatents, render_attenuation
from bcvlm_model.data.synth.sites import VENDORS

GENERATOR_VERSION = 2
"""Bumped whenever the same SynthConfig would give other pixels or labels (2: calcification specks and clusters with
pixel floors, the public population), so that a cohort made by an older generator is never reused as current."""

ORACLE_COLUMNS = (
    "image_id",
    "patient_id",
    "site_id",
    "calcification",
    "oracle_malignancy",
    "oracle_calcification",
    "prior_malignancy",
    "true_density",
    "mass_kind",
    "mass_ratio",
    "calc_visible",
    "manufacturer",
)


def image_relative_path(patient_id: str, image_id: str) -> str:
    """RSNA layout: train_images/<patient_id>/<image_id>.dcm."""
    return f"train_images/{patient_id}/{image_id}.dcm"


def _render_and_write(job: tuple[dict[str, Any], int, int, float, str, str]) -> str:
    row, height, width, lesion_contrast, transfer_syntax, out_dir = job
    target = Path(out_dir) / image_relative_path(row["patient_id"], row["image_id"])
    latents = ImageLatents(
        view=row["view"],
        laterality=row["laterality"],
        density_index=DENSITY_LEVELS.index(row["true_density"]),
        mass_kind=row["mass_kind"],
        mass_ratio=1.0 if row["mass_kind"] == 0 else row["mass_ratio"],
        calc_visible=row["calc_visible"],
        lesion_contrast=lesion_contrast,
    )
    attenuation = render_attenuation(latents, height, width, row["image_seed"])
    tags = ImageTags(
        row["patient_id"],
        row["image_id"],
        row["patient_id"],
        row["laterality"],
        row["view"],
        None if pd.isna(row["age"]) else int(row["age"]),
        bool(row["implant"]),
    )
    write_dataset(build_dataset(attenuation, VENDORS[row["vendor"]], tags, transfer_syntax), target)
    return row["image_id"]


def _csv_text(df: pd.DataFrame) -> str:
    buffer = io.StringIO()
    df.to_csv(buffer, index=False)
    return buffer.getvalue()


def generate_cohort(cfg: SynthConfig, out_dir: str | os.PathLike[str], progress: bool = True) -> pd.DataFrame:
    """Sample the cohort, write every DICOM (in parallel with cfg.workers processes) and the CSVs; return the rows."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cohort = sample_cohort(cfg)
    cohort["machine_id"] = cohort["vendor"].map(lambda v: VENDORS[v].machine_id)
    cohort["manufacturer"] = cohort["vendor"].map(lambda v: VENDORS[v].manufacturer)
    jobs = [
        (row, cfg.height, cfg.width, cfg.lesion_contrast, cfg.transfer_syntax, str(out))
        for row in cohort.to_dict("records")
    ]
    bar = tqdm(total=len(jobs), desc="synth", unit="img", disable=not progress)
    if cfg.workers <= 1:
        for job in jobs:
            _render_and_write(job)
            bar.update(1)
    else:
        with ProcessPoolExecutor(max_workers=cfg.workers) as pool:
            for _ in pool.map(_render_and_write, jobs, chunksize=8):
                bar.update(1)
    bar.close()
    train = cohort.loc[:, list(RSNA_COLUMNS)]
    atomic_write_text(out / "train.csv", _csv_text(train))
    atomic_write_text(out / "oracle.csv", _csv_text(cohort.loc[:, list(ORACLE_COLUMNS)]))
    atomic_write_json(out / "synth_config.json", config_to_dict(cfg))
    return cohort
