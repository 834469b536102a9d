"""`bcvlm prepare` engine: manifest from an adapter, parallel preprocessing into a resumable cache, rejects file."""

from __future__ import annotations

import multiprocessing
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from bcvlm_model.atomic_io import atomic_write_json, read_json
from bcvlm_model.config_io import config_to_dict
from bcvlm_model.data.adapters import build_manifest
from bcvlm_model.data.cache import cached_array_path, record_cache_config, save_cached_array
from bcvlm_model.data.errors import DicomRejected
from bcvlm_model.data.manifest import write_manifest
from bcvlm_model.data.pipeline import load_preprocessed_with_trace
from bcvlm_model.data.preprocess_config import PreprocessConfig
from bcvlm_model.data.rejects import RejectLog, write_rejects
from bcvlm_model.data.source_config import DataSourceConfig

REJECT_MARKER_SUFFIX = ".reject.json"
TRACE_SUFFIX = ".trace.json"


class StrictRejectError(RuntimeError):
    """Raised in --strict mode at the first rejected row or file."""


@dataclass
class PrepareSummary:
    """Counts of one `prepare` run, each input once: images = ready_now + ready_cached + rejected + pending."""

    images: int
    """Inputs: table rows / files the adapter accepted plus those it rejected."""
    processed: int
    """Images decoded in this run (ready or rejected)."""
    skipped: int
    """Images finished by an earlier run (a cached array or a remembered reject)."""
    rejected: int
    """Rejects of every stage (table, header, scan, pixels), each once."""
    cache_dir: Path
    finished: bool
    rejects: RejectLog
    ready_now: int = 0
    """Arrays written in this run."""
    ready_cached: int = 0
    """Arrays already in the cache."""
    pending: int = 0
    """Images not processed yet (`max_new_images` stopped the run)."""

    def describe(self) -> str:
        """One line for the user: each input counted once, rejects grouped by reason."""
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.rejects.counts_by_reason().items())) or "none"
        state = "done" if self.finished else "stopped early (run again to resume)"
        line = (
            f"{state}; {self.images} images: {self.ready_now + self.ready_cached} ready ({self.ready_now} "
            f"processed now, {self.ready_cached} from the cache), {self.rejected} rejected ({reasons})"
        )
        if self.pending:
            line += f", {self.pending} not processed yet"
        return f"{line}; cache {self.cache_dir}"


def _reject_marker(array_path: Path) -> Path:
    return array_path.with_name(array_path.name[: -len(".npy")] + REJECT_MARKER_SUFFIX)


def trace_path(array_path: Path) -> Path:
    """Sidecar JSON of a cached array: orientation, crop box, VOI kind, share of tissue kept by the crop."""
    return array_path.with_name(array_path.name[: -len(".npy")] + TRACE_SUFFIX)


def source_fingerprint(path: str) -> dict[str, int] | None:
    """Size and modification time of a source file, stored with its cache entry (None if it cannot be read)."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return {"size": int(status.st_size), "mtime_ns": int(status.st_mtime_ns)}


def _made_from_another_file(record: Path, path: str) -> bool:
    """True when a cache record (trace or reject marker) was made from a file other than what is at `path` now.
    Records written before fingerprints existed are trusted."""
    if not record.is_file():
        return False
    saved = read_json(record).get("source")
    return saved is not None and saved != source_fingerprint(path)


def decode_threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Decoder threads each worker may use: the cores the workers leave idle, shared out (at least 1)."""
    if cores is None:  # the cores this process may run on (sched_getaffinity is Linux-only)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    available = cores
    return max(1, available // max(1, workers))


def _process_one(job: tuple[str, str, str, dict, int]) -> tuple[str, str | None]:
    """Worker: preprocess one DICOM into its cache file; returns (image_id, reject reason or None)."""
    image_id, dicom_path, array_path, cfg_dict, threads = job
    cfg = PreprocessConfig(**cfg_dict)
    source = source_fingerprint(dicom_path)  # before reading: a file replaced mid-read is redone next run
    try:
        image, trace = load_preprocessed_with_trace(dicom_path, cfg, decode_threads=threads)
    except DicomRejected as exc:
        return image_id, exc.reason
    atomic_write_json(trace_path(Path(array_path)), {"image_id": image_id, "source": source, **asdict(trace)})
    save_cached_array(array_path, image)  # last: an existing array means its job is complete
    return image_id, None


def remove_stale_temporaries(folder: Path) -> int:
    """Delete temp files a killed run left behind (atomic writes never leave partial final files)."""
    removed = 0
    if folder.is_dir():
        for stale in folder.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
            removed += 1
    return removed


def run_prepare(
    source: DataSourceConfig,
    preprocess: PreprocessConfig,
    out_dir: str | os.PathLike[str],
    workers: int = 1,
    strict: bool = False,
    progress: bool = True,
    max_new_images: int | None = None,
    on_image_done: Callable[[str], None] | None = None,
) -> PrepareSummary:
    """Build the manifest, preprocess every image not yet cached, write manifest.csv and rejects.csv.

    Resumable and idempotent: finished arrays (and remembered rejects) of the same preprocess config are skipped.
    `max_new_images` stops after that many newly processed images (manifest.csv is then not written).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = build_manifest(source)
    rejects = result.rejects
    if strict and len(rejects):
        first = rejects.rows[0]
        raise StrictRejectError(
            f"--strict: {len(rejects)} reject(s); first: {first['path'] or first['image_id']}: {first['reason']}"
        )
    manifest = result.manifest
    inputs = len(manifest) + len(rejects)  # before the pixel stage adds rejects of manifest rows
    folder = record_cache_config(out / "cache", preprocess)
    remove_stale_temporaries(folder)
    cfg_dict = config_to_dict(preprocess)
    threads = decode_threads_per_worker(workers)
    jobs, skipped, failed_ids = [], 0, set()
    for image_id, path in zip(manifest["image_id"], manifest["path"]):
        target = cached_array_path(out / "cache", preprocess, image_id)
        marker = _reject_marker(target)
        if _made_from_another_file(trace_path(target), path) or _made_from_another_file(marker, path):
            for stale in (target, trace_path(target), marker):  # the source changed under the same image id
                stale.unlink(missing_ok=True)
        if target.is_file():
            skipped += 1
        elif marker.is_file():
            skipped += 1
            failed_ids.add(image_id)
            rejects.add(image_id, path, "pixels", str(read_json(marker)["reason"]))
        else:
            jobs.append((image_id, path, str(target), cfg_dict, threads))
    if max_new_images is not None:
        jobs = jobs[:max_new_images]
    paths = dict(zip(manifest["image_id"], manifest["path"]))
    processed = 0
    newly_failed: set[str] = set()
    bar = tqdm(total=len(jobs), desc="prepare", unit="img", disable=not progress)

    def handle(image_id: str, reason: str | None) -> None:
        nonlocal processed
        processed += 1
        bar.update(1)
        if reason is not None:
            target = cached_array_path(out / "cache", preprocess, image_id)
            atomic_write_json(
                _reject_marker(target),
                {"image_id": image_id, "reason": reason, "source": source_fingerprint(paths[image_id])},
            )
            failed_ids.add(image_id)
            newly_failed.add(image_id)
            rejects.add(image_id, paths[image_id], "pixels", reason)
            if strict:
                raise StrictRejectError(f"--strict: {paths[image_id]}: {reason}")
        if on_image_done is not None:
            on_image_done(image_id)

    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            handle(*_process_one(job))
    else:
        # fork: workers inherit the imported pipeline instead of re-importing it (seconds per worker on 2 cores)
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        context = multiprocessing.get_context(method)
        with context.Pool(processes=workers) as pool:
            for image_id, reason in pool.imap_unordered(_process_one, jobs, chunksize=1):
                handle(image_id, reason)
    bar.close()
    finished = all(
        image_id in failed_ids or cached_array_path(out / "cache", preprocess, image_id).is_file()
        for image_id in manifest["image_id"]
    )
    if finished:
        good = manifest.loc[~manifest["image_id"].isin(failed_ids)].reset_index(drop=True)
        good["path"] = [os.path.abspath(path) for path in good["path"]]  # readable from any working folder
        write_manifest(good, out / "manifest.csv")
        write_rejects(rejects, out / "rejects.csv")
    cached_now = {
        image_id
        for image_id in manifest["image_id"]
        if cached_array_path(out / "cache", preprocess, image_id).is_file()
    }
    new_ready = processed - len(newly_failed)
    return PrepareSummary(
        images=inputs,
        processed=processed,
        skipped=skipped,
        rejected=len(rejects),
        cache_dir=folder,
        finished=finished,
        rejects=rejects,
        ready_now=new_ready,
        ready_cached=len(cached_now) - new_ready,
        pending=len(manifest) - len(cached_now) - len(failed_ids),
    )
