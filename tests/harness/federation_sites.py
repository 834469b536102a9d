"""Test helpers for federation tests: small learnable sites (cached arrays + manifest + site YAML) and configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from bcvlm_client.privacy_ledger import init_ledger
from bcvlm_client.site_config import load_site_config
from bcvlm_client.site_data import ledger_terms, summarise_site_data
from bcvlm_model.data.cache import cached_array_path, record_cache_config, save_cached_array
from bcvlm_model.data.manifest import MANIFEST_COLUMNS, write_manifest
from bcvlm_model.data.preprocess_config import PreprocessConfig
from bcvlm_model.model_config import FusionConfig, ImageEncoderConfig, ModelConfig, TextEncoderConfig
from bcvlm_model.privacy.dp_ready_config import DPReadyConfig
from bcvlm_model.training.local_train_config import LocalTrainConfig

HEIGHT, WIDTH = 64, 32


def tiny_model_config(kind: str = "vlm") -> ModelConfig:
    """The one tiny preset of tests and benchmarks: real pretrained encoders (Lite0 last stage trains, 1-layer frozen
    MiniLM), 32-d fusion, no dropout."""
    return ModelConfig(
        kind=kind,
        image_encoder=ImageEncoderConfig(trainable_stages=1),
        text_encoder=TextEncoderConfig(num_layers=1, trainable_layers=0),
        fusion=FusionConfig(dim=32, heads=4, mlp_ratio=2.0),
        dropout=0.0,
    )


def tiny_preprocess() -> PreprocessConfig:
    return PreprocessConfig(image_height=HEIGHT, image_width=WIDTH)


TINY_DP_TRAINABLE = DPReadyConfig(image_trainable_stages=1, text_trainable_layers=0)
"""What trains under DP in the tiny federation: the last Lite0 stage, projections, fusion and heads."""


def tiny_round_config(
    server_round: int = 1,
    *,
    planned_rounds: int = 2,
    local_steps: int = 2,
    preprocess: PreprocessConfig | None = None,
    dp_trainable: DPReadyConfig = TINY_DP_TRAINABLE,
) -> dict[str, Any]:
    """The round settings an honest bcvlm server sends for the tiny federation, encoded as on the wire."""
    from bcvlm_client.run_settings import encode_round_settings
    from bcvlm_model.text import TextConfig

    return encode_round_settings(
        server_round=server_round,
        planned_rounds=planned_rounds,
        proximal_mu=0.0,
        n_bins=100,
        model=tiny_model_config(),
        preprocess=preprocess or tiny_preprocess(),
        text=TextConfig(),
        local_train=LocalTrainConfig(local_steps=local_steps),
        dp_trainable=dp_trainable,
        dp=True,
    )


def tiny_global_arrays() -> list[np.ndarray]:
    """The tiny federation's starting global model as the server sends it (its trainable arrays, packed)."""
    from bcvlm_client.array_packing import pack_model
    from bcvlm_server.server_app import trainable_arrays

    return pack_model(trainable_arrays(SHARED_MODELS(tiny_model_config(), TINY_DP_TRAINABLE)))


def make_site(
    root: Path,
    name: str,
    *,
    n_train: int = 12,
    n_test: int = 12,
    seed: int = 0,
    privacy: dict[str, Any] | None = None,
    limits: dict[str, Any] | None = None,
    images_per_patient: int = 1,
    val_fraction: float | None = None,
    evaluation: dict[str, Any] | None = None,
) -> Path:
    """Write a site's cached images, manifest and site YAML under root/name; returns the YAML path.

    `val_fraction` / `evaluation`: the site's `data.val_fraction` and release bounds (defaults when None).

    Malignant images carry a bright blob, so the task is learnable; calcification is labelled on half the rows.
    """
    rng = np.random.default_rng(seed)
    folder = root / name
    cache = folder / "cache"
    preprocess = tiny_preprocess()
    record_cache_config(cache, preprocess)
    rows = []
    for index in range(n_train + n_test):
        malignant = float(index % 2)
        image = rng.uniform(0.1, 0.4, size=(HEIGHT, WIDTH)).astype(np.float32)
        if malignant:
            image[20:36, 8:24] += 0.5
        image_id = f"{name}-img-{index}"
        save_cached_array(cached_array_path(cache, preprocess, image_id), np.clip(image, 0, 1))
        row = {column: None for column in MANIFEST_COLUMNS}
        row.update(
            source="synthetic",
            site_id=name,
            patient_id=f"{name}-p{index // images_per_patient}",
            study_id=f"{name}-s{index // images_per_patient}",
            image_id=image_id,
            path=str(folder / "missing.dcm"),
            laterality="LR"[index % 2],
            view=("CC", "MLO")[index % 2],
            age=float(40 + index),
            density="ABCD"[index % 4],
            implant=0.0,
            manufacturer="Hologic",
            machine_id="1",
            malignancy=malignant,
            calcification=float(index % 3 == 0) if index % 2 == 0 else float("nan"),
            split="train" if index < n_train else "test",
            oracle_malignancy=float("nan"),
            oracle_calcification=float("nan"),
        )
        rows.append(row)
    manifest = folder / "manifest.csv"
    write_manifest(pd.DataFrame(rows), manifest)
    site = {
        "site_id": name,
        "insecure": True,
        "data": {
            "manifest": str(manifest),
            "cache_dir": str(cache),
            **({"val_fraction": val_fraction} if val_fraction is not None else {}),
        },
        "compute": {"batch_size": 4, "eval_batch_size": 8},
        "privacy": privacy or {"enabled": True, "target_epsilon": 50.0, "delta": 1e-3, "max_grad_norm": 1.0},
        "state_dir": str(folder / "state"),
        "seed": seed,
        **({"limits": limits} if limits else {}),
        **({"evaluation": evaluation} if evaluation else {}),
    }
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    site_cfg = load_site_config(path)
    if site_cfg.privacy.enabled:
        init_ledger(site_cfg.state_dir, ledger_terms(site_cfg, summarise_site_data(site_cfg)))
    return path


def ready_site_fields(root: Path, name: str = "data", state_dir: Path | None = None) -> dict[str, Any]:
    """Site YAML keys (`data`, `privacy`, `state_dir`) of a site with real data and an initialised ledger, for tests
    that write their own site YAML around real Flower processes (`state_dir`: where the ledger should live)."""
    import shutil

    fields = yaml.safe_load(make_site(root, name).read_text())
    if state_dir is not None:  # the ledger and its key move together: it verifies wherever it lives
        shutil.copytree(fields["state_dir"], state_dir, dirs_exist_ok=True)
        fields["state_dir"] = str(state_dir)
    return {key: fields[key] for key in ("data", "privacy", "state_dir")}


def server_config_dict(run_dir: Path, **overrides: Any) -> dict[str, Any]:
    """A small ServerConfig (as a dict for YAML) over the tiny model and images."""
    from bcvlm_model.config_io import config_to_dict

    payload: dict[str, Any] = {
        "model": config_to_dict(tiny_model_config()),
        "preprocess": config_to_dict(tiny_preprocess()),
        "local_train": config_to_dict(LocalTrainConfig(local_steps=2, learning_rate=1e-3)),
        "dp_trainable": config_to_dict(TINY_DP_TRAINABLE),
        "rounds": 2,
        "min_sites": 3,
        "run_dir": str(run_dir),
        "evaluation": {"min_cases": 2, "n_bins": 100},
        "secagg": {"timeout_s": 60.0, "max_weight": 100.0},
        "round_timeout_s": 60.0,
    }
    for key, value in overrides.items():
        target = payload
        parts = key.split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    return payload


class SharedModelFactory:
    """Builds each (model config, DP trainable set) once per test session; every caller gets a deep copy."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def __call__(self, model_cfg: ModelConfig, dp_trainable: DPReadyConfig | None):
        import copy

        import torch

        from bcvlm_model.privacy.federated_model import build_federated_model

        key = repr((model_cfg, dp_trainable))
        if key not in self._cache:
            torch.manual_seed(0)
            self._cache[key] = build_federated_model(model_cfg, dp_trainable)
        return copy.deepcopy(self._cache[key])


SHARED_MODELS = SharedModelFactory()


def site_trainer_factory(site_cfg):
    """SiteTrainer over the shared model cache (tests only: avoids rebuilding the pretrained encoders per site)."""
    from bcvlm_client.site_training import SiteTrainer

    return SiteTrainer(site_cfg, model_factory=SHARED_MODELS)


def server_model_factory(cfg):
    return SHARED_MODELS(cfg.model, cfg.dp_trainable if cfg.dp_model else None)


class FailingTrainer:
    """A site whose data is unreadable: fit and evaluate raise with a path in the text (which must never leave)."""

    SECRET = "/hospital/pacs/patient-4711/image.dcm"

    def __init__(self, site_cfg) -> None:
        self.site = site_cfg

    def fit(self, arrays, settings, run_id):
        raise OSError(f"{self.SECRET}: file not found")

    def evaluate(self, arrays, settings):
        raise OSError(f"{self.SECRET}: file not found")

    def secure_evaluation(self, arrays, settings, count_scale, weight):
        raise OSError(f"{self.SECRET}: file not found")


def run_inprocess(
    root: Path,
    sites: dict[int, Path],
    name: str,
    *,
    resume: bool = False,
    silent=None,
    trainer_factory=None,
    count_timeouts: bool = False,
    departed: set[int] | None = None,
    **overrides: Any,
):
    """Run the real ServerApp and ClientApps over an InProcessGrid; returns (config, strategy, grid)."""
    from flwr.app import Context, RecordDict

    from bcvlm_client.client_app import build_client_app
    from bcvlm_server.server_app import run_federation
    from bcvlm_server.server_config import load_server_config
    from bcvlm_testing.inprocess_grid import InProcessGrid

    config_path = root / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(server_config_dict(root / "run", **overrides)))
    cfg = load_server_config(config_path)
    trainers: dict[str, Any] = {}
    make = trainer_factory or site_trainer_factory

    def trainer(site_cfg):
        return trainers.setdefault(site_cfg.site_id, make(site_cfg))

    app = build_client_app(trainer_factory=trainer)
    grid = InProcessGrid(
        app,
        {node: {"site-config": str(path)} for node, path in sites.items()},
        silent_nodes=silent,
        count_timeouts=count_timeouts,
        departed=departed,
    )
    context = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
    strategy = run_federation(grid, context, cfg, root / "run", resume, server_model_factory)
    return cfg, strategy, grid


def is_evaluation(message) -> bool:
    """An evaluation instruction: a plain evaluate message, or a SecAgg+ pass's secure-evaluation "train" message."""
    from bcvlm_client.reply_schema import asks_secure_evaluation

    if message.metadata.message_type == "evaluate":
        return True
    return message.has_content() and asks_secure_evaluation(message.content.config_records)


def write_simulated_sites(run_dir: Path, data_dir: Path, site_names: list[str], **server_overrides: Any) -> None:
    """A run directory as `bcvlm simulate` writes it: sites/site_<k>.yaml for test sites made under `data_dir`, and
    server.yaml (`server_config_dict` over `<run_dir>/federated` with the overrides)."""
    import shutil

    from bcvlm_simulation.federation import server_config_path, site_config_path

    for index, name in enumerate(site_names):
        target = site_config_path(run_dir, index)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(make_site(data_dir, name, seed=index), target)
    server_config_path(run_dir).write_text(
        yaml.safe_dump(server_config_dict(run_dir / "federated", **server_overrides))
    )
