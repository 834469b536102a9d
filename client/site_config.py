"""SiteConfig: one hospital's settings for `bcvlm-client --site cfg.yaml` (structured config, validated at load)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from omegaconf import MISSING

from bcvlm_model.config_io import ConfigError, load_config


@dataclass
class SiteDataConfig:
    """Where the site's prepared data lives (written by `bcvlm prepare`)."""

    manifest: str = MISSING
    """Path of the site's manifest.csv."""
    cache_dir: Optional[str] = None
    """Preprocessed-image cache folder (None = decode DICOMs on the fly)."""
    train_split: str = "train"
    eval_split: str = "test"


@dataclass
class ComputeConfig:
    """The site's compute: device, batch sizes and CPU threads."""

    device: str = "cpu"
    """"cpu", "cuda" or "cuda:N"."""
    batch_size: int = 8
    """Training batch size (the expected size of a Poisson batch under DP)."""
    eval_batch_size: int = 16
    bf16: bool = False
    """bf16 autocast on this site's device (overrides nothing the server sends except precision)."""
    num_workers: int = 0
    num_threads: Optional[int] = None
    """CPU threads for training (torch, OpenMP, MKL); None = the machine's cores (or OMP_NUM_THREADS if set). Use 1
    per site when several sites share one machine."""


@dataclass
class PrivacyBudgetConfig:
    """The site's differential-privacy budget for the whole run (sample-level DP-SGD)."""

    enabled: bool = True
    target_epsilon: float = 8.0
    delta: float = 1e-5
    max_grad_norm: float = 1.0
    accountant: str = "rdp"


@dataclass
class SiteConfig:
    """One hospital site. Model, preprocessing, text and local-train settings come from the server each round."""

    site_id: str = MISSING
    """Local name for logs and the ledger; never sent to the server."""
    superlink_address: str = "127.0.0.1:9092"
    """host:port of the coordinating center's SuperLink Fleet API."""
    ca_cert: Optional[str] = None
    """CA certificate (PEM) that signed the SuperLink's TLS certificate."""
    private_key: Optional[str] = None
    """This site's EC private key (PEM) for SuperNode authentication."""
    insecure: bool = False
    """Plain HTTP without TLS or authentication: tests and simulation only."""
    data: SiteDataConfig = field(default_factory=SiteDataConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    privacy: PrivacyBudgetConfig = field(default_factory=PrivacyBudgetConfig)
    state_dir: str = MISSING
    """Site-private folder for the privacy ledger and logs (persisted across restarts)."""
    seed: int = 0


def validate_site_config(cfg: SiteConfig, source: str = "site config", check_paths: bool = True) -> SiteConfig:
    """Range and path checks that the schema cannot express; ConfigError names the key."""

    def fail(key: str, message: str) -> None:
        raise ConfigError(f"{source}: key '{key}': {message}")

    if not cfg.site_id.strip():
        fail("site_id", "must not be empty")
    if cfg.compute.batch_size < 1:
        fail("compute.batch_size", f"must be >= 1, got {cfg.compute.batch_size}")
    if cfg.compute.eval_batch_size < 1:
        fail("compute.eval_batch_size", f"must be >= 1, got {cfg.compute.eval_batch_size}")
    if cfg.compute.num_threads is not None and cfg.compute.num_threads < 1:
        fail("compute.num_threads", f"must be >= 1 (or null for all cores), got {cfg.compute.num_threads}")
    if cfg.compute.num_workers < 0:
        fail("compute.num_workers", f"must be >= 0, got {cfg.compute.num_workers}")
    if not (cfg.compute.device == "cpu" or cfg.compute.device.startswith("cuda")):
        fail("compute.device", f"must be 'cpu', 'cuda' or 'cuda:N', got '{cfg.compute.device}'")
    privacy = cfg.privacy
    if privacy.enabled:
        if not privacy.target_epsilon > 0:
            fail("privacy.target_epsilon", f"must be > 0, got {privacy.target_epsilon}")
        if not 0 < privacy.delta < 1:
            fail("privacy.delta", f"must be in (0, 1), got {privacy.delta}")
        if not privacy.max_grad_norm > 0:
            fail("privacy.max_grad_norm", f"must be > 0, got {privacy.max_grad_norm}")
    from bcvlm_model.privacy.dp_training import ACCOUNTANTS  # lazy: opacus/torch are heavy to import

    if privacy.accountant not in ACCOUNTANTS:
        fail("privacy.accountant", f"must be one of {ACCOUNTANTS}, got '{privacy.accountant}'")
    if not cfg.insecure:
        for key in ("ca_cert", "private_key"):
            if getattr(cfg, key) is None:
                fail(key, "is required unless insecure: true")
    if check_paths:
        paths = {"data.manifest": cfg.data.manifest}
        if not cfg.insecure:
            paths.update({"ca_cert": cfg.ca_cert, "private_key": cfg.private_key})
        for key, value in paths.items():
            if value is not None and not Path(value).is_file():
                fail(key, f"file not found: {value}")
        if cfg.data.cache_dir is not None and not Path(cfg.data.cache_dir).is_dir():
            fail("data.cache_dir", f"folder not found: {cfg.data.cache_dir}")
    return cfg


def load_site_config(path: str | os.PathLike[str], overrides: tuple[str, ...] = (), check_paths: bool = True) -> SiteConfig:
    """Load and validate a site YAML (unknown keys, wrong types, missing values or paths raise ConfigError)."""
    cfg = load_config(SiteConfig, path, overrides)
    return validate_site_config(cfg, source=str(path), check_paths=check_paths)
