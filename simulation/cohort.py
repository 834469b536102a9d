"""The simulation's input: a prepared manifest, or the synthetic cohort generated and prepared into the run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from bcvlm_model.atomic_io import atomic_write_json, read_json
from bcvlm_model.config_io import config_to_dict
from bcvlm_model.data.manifest import read_manifest
from bcvlm_model.data.preprocess_config import PreprocessConfig
from bcvlm_model.data.synth.config import SynthConfig
from bcvlm_simulation.config import CohortConfig

COHORT_STAMP = "simulation_cohort.json"
"""Written last in the synthetic cohort folder: the synth + preprocess settings and generator version it was made
with (reuse key)."""


def synthetic_cohort_dir(cohort: CohortConfig, default: Path) -> Path:
    """Folder of a synthetic cohort: `cohort.synth_dir`, or `default` (e.g. `<run_dir>/cohort`)."""
    return Path(cohort.synth_dir).resolve() if cohort.synth_dir else default


def make_synthetic_cohort(
    synth: SynthConfig, preprocess: PreprocessConfig, folder: Path, progress: bool = True
) -> tuple[pd.DataFrame, str]:
    """Generate the synthetic DICOM cohort (`bcvlm synth`) and prepare it (`bcvlm prepare`); reuse a complete one."""
    from bcvlm_model.data.prepare import run_prepare
    from bcvlm_model.data.source_config import DataSourceConfig
    from bcvlm_model.data.synth.generate import GENERATOR_VERSION, generate_cohort

    key = {
        "synth": config_to_dict(synth),
        "preprocess": config_to_dict(preprocess),
        "generator_version": GENERATOR_VERSION,
    }
    stamp = folder / COHORT_STAMP
    prepared = folder / "prepared"
    if stamp.is_file() and read_json(stamp) == key and (prepared / "manifest.csv").is_file():
        print(f"[simulate] reusing the synthetic cohort in {folder}", flush=True)
    else:
        print(f"[simulate] generating the synthetic cohort in {folder}", flush=True)
        # Other settings reuse the same image ids for other pixels: the old DICOMs and cache must go, or
        # `prepare` (which resumes by image id) would serve the old cohort's images under the new labels.
        stamp.unlink(missing_ok=True)
        for derived in (folder / "dicom", prepared):
            if derived.is_dir():
                shutil.rmtree(derived)
        generate_cohort(synth, folder / "dicom", progress=progress)
        source = DataSourceConfig(kind="synthetic", root=str(folder / "dicom"))
        run_prepare(source, preprocess, prepared, workers=1, progress=progress)
        atomic_write_json(stamp, key)
    return read_manifest(prepared / "manifest.csv"), str(prepared / "cache")


def load_cohort(
    cohort: CohortConfig, preprocess: PreprocessConfig, default_dir: Path, progress: bool = True
) -> tuple[pd.DataFrame, str | None]:
    """The manifest of `cohort` and its image cache folder (None = decode DICOMs on the fly); a synthetic cohort is
    made in `cohort.synth_dir` or `default_dir`."""
    if cohort.manifest:
        path = Path(cohort.manifest)
        if not path.is_file():
            raise FileNotFoundError(f"cohort.manifest: file not found: {path} (write it with `bcvlm prepare`)")
        cache = cohort.cache_dir
        if cache is not None and not Path(cache).is_dir():
            raise FileNotFoundError(f"cohort.cache_dir: folder not found: {cache}")
        return read_manifest(path), cache
    return make_synthetic_cohort(cohort.synth, preprocess, synthetic_cohort_dir(cohort, default_dir), progress)
