"""SiteConfig: one hospital's settings for `bcvlm-client --site cfg.yaml` (structured config, validated at load)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from omegaconf import MISSING

from bcvlm_client.superlink_address import is_loopback_address
from bcvlm_model.config_io import ConfigError, load_config, to_enum
from bcvlm_model.features.storage_dtype import FeatureDtype
from bcvlm_model.model_config import ModelKind
from bcvlm_model.privacy.accountants import Accountant
from bcvlm_model.privacy.privacy_unit import PrivacyUnit


def _fail(key: str, message: str) -> None:
    raise ConfigError(f"key '{key}': {message}")


@dataclass
class SiteDataConfig:
    """Where the site's prepared data lives (written by `bcvlm prepare`)."""

    manifest: str = MISSING
    """Path of the site's manifest.csv."""
    cache_dir: Optional[str] = None
    """Preprocessed-image cache folder (`bcvlm prepare`'s out/cache); None needs `decode_on_the_fly: true`."""
    decode_on_the_fly: bool = False
    """Decode the DICOM of every image the cache lacks for the server's `preprocess`, every epoch (slow). False: a
    round whose preprocessing this site has no complete cache for is declined (PREPROCESS_MISMATCH)."""
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
    frozen_feature_cache: bool = True
    """Train from cached outputs of the frozen image stages and frozen text encoder, computed once per record and kept
    under <state_dir>/frozen_features (keyed by the frozen weights and the preprocessing; a change recomputes)."""
    frozen_feature_dtype: FeatureDtype = FeatureDtype.float16
    """Storage dtype of the frozen-feature cache (see FeatureDtype)."""

    def __post_init__(self) -> None:
        self.frozen_feature_dtype = to_enum(FeatureDtype, self.frozen_feature_dtype, "compute.frozen_feature_dtype")
        if self.batch_size < 1:
            _fail("compute.batch_size", f"must be >= 1, got {self.batch_size}")
        if self.eval_batch_size < 1:
            _fail("compute.eval_batch_size", f"must be >= 1, got {self.eval_batch_size}")
        if self.num_threads is not None and self.num_threads < 1:
            _fail("compute.num_threads", f"must be >= 1 (or null for all cores), got {self.num_threads}")
        if self.num_workers < 0:
            _fail("compute.num_workers", f"must be >= 0, got {self.num_workers}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            _fail("compute.device", f"must be 'cpu', 'cuda' or 'cuda:N', got '{self.device}'")


@dataclass
class PrivacyBudgetConfig:
    """The site's differential-privacy budget: all runs of this site on this training set (DP-SGD).

    Only the site sets these; a server can ask for a smaller epsilon, never a larger one."""

    enabled: bool = True
    unit: PrivacyUnit = PrivacyUnit.patient
    """What one DP record is: `patient` (default; all of a patient's images sampled and clipped together) or
    `image` (weaker: a patient with k images is protected only at k x epsilon)."""
    target_epsilon: float = 8.0
    delta: float = 1e-5
    """Must be at most 1 / (10 x number of training records: patients, or images under `unit: image`); checked at
    `--check`, `--init-ledger` and when a fit starts."""
    max_grad_norm: float = 1.0
    accountant: Accountant = Accountant.rdp
    """See Accountant (Opacus' "gdp" is refused: it forgets all but the last round of a history)."""
    insecure_reproducible_noise: bool = False
    """SIMULATION ONLY: derive DP sampling and noise from `seed` and the round, so anyone who knows both can strip
    the noise from an update. `bcvlm-client` refuses it; False = secret seeds from the OS CSPRNG."""

    def __post_init__(self) -> None:
        self.unit = to_enum(PrivacyUnit, self.unit, "privacy.unit")
        self.accountant = to_enum(Accountant, self.accountant, "privacy.accountant")
        if self.enabled:
            if not self.target_epsilon > 0:
                _fail("privacy.target_epsilon", f"must be > 0, got {self.target_epsilon}")
            if not 0 < self.delta < 1:
                _fail("privacy.delta", f"must be in (0, 1), got {self.delta}")
            if not self.max_grad_norm > 0:
                _fail("privacy.max_grad_norm", f"must be > 0, got {self.max_grad_norm}")


@dataclass
class SiteEvaluationConfig:
    """What this site releases about its test patients, whatever the server asks."""

    max_bins: int = 1000
    """At most this many score cells per histogram (a server asking for finer bins gets coarse cells)."""
    min_cell_count: int = 5
    """Adjacent cells are merged until each holds at least this many cases; fewer in total releases nothing."""
    site_auc_min_cases: int = 20
    """The site sends its own AUC only with at least this many positive and this many negative cases."""

    def __post_init__(self) -> None:
        for key in ("max_bins", "min_cell_count", "site_auc_min_cases"):
            if getattr(self, key) < 1:
                _fail(f"evaluation.{key}", f"must be >= 1, got {getattr(self, key)}")


@dataclass
class SiteLimitsConfig:
    """What the server may ask of this site per run; an instruction outside these makes the site decline the round."""

    max_local_steps: int = 1000
    """Most DP-SGD steps in one round (a server asking for more, or for a pass over more batches, is declined)."""
    max_rounds: int = 100
    """Most rounds in one run (`planned-rounds` above this, or a round number past the plan, is declined)."""
    model_kinds: list[ModelKind] = field(default_factory=lambda: [ModelKind.vlm, ModelKind.image_only])
    """Model kinds this site agrees to train."""

    def __post_init__(self) -> None:
        self.model_kinds = [to_enum(ModelKind, kind, "limits.model_kinds") for kind in self.model_kinds]
        if not self.model_kinds:
            _fail("limits.model_kinds", "must name at least one model kind")
        if self.max_local_steps < 1:
            _fail("limits.max_local_steps", f"must be >= 1, got {self.max_local_steps}")
        if self.max_rounds < 1:
            _fail("limits.max_rounds", f"must be >= 1, got {self.max_rounds}")


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
    limits: SiteLimitsConfig = field(default_factory=SiteLimitsConfig)
    evaluation: SiteEvaluationConfig = field(default_factory=SiteEvaluationConfig)
    state_dir: str = MISSING
    """Site-private folder for the privacy ledger, its key and logs (persisted across restarts and runs)."""
    seed: int = 0
    """Shuffling and report augmentation only; DP sampling and noise never depend on it (unless
    `privacy.insecure_reproducible_noise`, simulation only)."""
    approved_fab_sha256: List[str] = field(default_factory=list)
    """SHA-256 (hex) of app bundles this site also runs although they carry code or name another ClientApp (each one
    reviewed by the site first). Without an entry, only code-free bundles naming the installed bcvlm ClientApp run."""


_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def validate_site_config(cfg: SiteConfig, source: str = "site config", check_paths: bool = True) -> SiteConfig:
    """Checks across sections, transport and paths (enums and ranges are checked when the config loads)."""

    def fail(key: str, message: str) -> None:
        raise ConfigError(f"{source}: key '{key}': {message}")

    if not cfg.site_id.strip():
        fail("site_id", "must not be empty")
    if cfg.data.cache_dir is None and not cfg.data.decode_on_the_fly:
        fail(
            "data.cache_dir",
            "is required unless data.decode_on_the_fly: true (then every DICOM is decoded on "
            "every epoch); point it at the cache/ folder `bcvlm prepare` wrote",
        )
    for index, digest in enumerate(cfg.approved_fab_sha256):
        if not _SHA256_HEX.match(str(digest)):
            fail(f"approved_fab_sha256[{index}]", f"must be 64 lowercase hex digits (a SHA-256), got '{digest}'")
    if not cfg.insecure:
        for key in ("ca_cert", "private_key"):
            if getattr(cfg, key) is None:
                fail(key, "is required unless insecure: true")
    elif not is_loopback_address(cfg.superlink_address):
        # Without TLS anyone on the path reads and alters the model updates and could pose as the server.
        fail(
            "insecure",
            f"true is only allowed for a SuperLink on this machine (127.0.0.1, ::1, localhost), not "
            f"'{cfg.superlink_address}': use TLS with ca_cert and private_key",
        )
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


def refuse_simulation_only_settings(cfg: SiteConfig, source: str = "site config") -> SiteConfig:
    """A deployed site never runs with reproducible (server-predictable) DP noise; ConfigError names the key."""
    if cfg.privacy.insecure_reproducible_noise:
        raise ConfigError(
            f"{source}: key 'privacy.insecure_reproducible_noise': simulation only (anyone who knows "
            "the seed and round can strip the DP noise); remove it from a deployed site's config"
        )
    return cfg


def load_site_config(
    path: str | os.PathLike[str], overrides: tuple[str, ...] = (), check_paths: bool = True
) -> SiteConfig:
    """Load and validate a site YAML (unknown keys, wrong types, missing values or paths raise ConfigError)."""
    cfg = load_config(SiteConfig, path, overrides)
    return validate_site_config(cfg, source=str(path), check_paths=check_paths)
