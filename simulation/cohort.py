"""The simulation's input: a prepared manifest, or the synthetic cohort generated and prepared into the run."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bcvlm_model.atomic_io import atomic_write_json, read_json
from bcvlm_model.config_io import config_to_dict
from bcvlm_model.data.manifest import read_manifest
from bcvlm_simulation.config import SimulationConfig

COHORT_STAMP = "simulation_cohort.json"
"""Written last in the synthetic cohort folder: the synth + preprocess settings it was made with (reuse key)."""


def synthetic_cohort_dir(cfg: SimulationConfig, run_dir: Path) -> Path:
    """Folder of the synthetic cohort: `cohort.synth_dir`, or `<run_dir>/cohort`."""
    return Path(cfg.cohort.synth_dir).resolve() if cfg.cohort.synth_dir else run_dir / "cohort"


def make_synthetic_cohort(cfg: SimulationConfig, folder: Path) -> tuple[pd.DataFrame, str]:
    """Generate the synthetic DICOM cohort (`bcvlm synth`) and prepare it (`bcvlm prepare`); reuse a complete one."""
    from bcvlm_model.data.prepare import run_prepare
    from bcvlm_model.data.source_config import DataSourceConfig
    from bcvlm_model.data.synth.generate import generate_cohort

    key = {"synth": config_to_dict(cfg.cohort.synth), "preprocess": config_to_dict(cfg.server.preprocess)}
    stamp = folder / COHORT_STAMP
    prepared = folder / "prepared"
    if stamp.is_file() and read_json(stamp) == key and (prepared / "manifest.csv").is_file():
        print(f"[simulate] reusing the synthetic cohort in {folder}", flush=True)
    else:
        print(f"[simulate] generating the synthetic cohort in {folder}", flush=True)
        generate_cohort(cfg.cohort.synth, folder / "dicom", progress=cfg.progress)
        source = DataSourceConfig(kind="synthetic", root=str(folder / "dicom"))
        run_prepare(source, cfg.server.preprocess, prepared, workers=1, progress=cfg.progress)
        atomic_write_json(stamp, key)
    return read_manifest(prepared / "manifest.csv"), str(prepared / "cache")


def prepare_cohort(cfg: SimulationConfig, run_dir: Path) -> tuple[pd.DataFrame, str | None]:
    """The manifest to split and its image cache folder (None = decode DICOMs on the fly)."""
    if cfg.cohort.manifest:
        path = Path(cfg.cohort.manifest)
        if not path.is_file():
            raise FileNotFoundError(f"cohort.manifest: file not found: {path} (write it with `bcvlm prepare`)")
        cache = cfg.cohort.cache_dir
        if cache is not None and not Path(cache).is_dir():
            raise FileNotFoundError(f"cohort.cache_dir: folder not found: {cache}")
        return read_manifest(path), cache
    return make_synthetic_cohort(cfg, synthetic_cohort_dir(cfg, run_dir))
