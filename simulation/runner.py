"""The simulation job: cohort -> virtual sites -> federated run on Flower's engine -> baselines -> report."""

from __future__ import annotations

import os
import random
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bcvlm_client.preprocess_agreement import cache_gap, wanted_preprocess
from bcvlm_client.privacy_ledger import init_ledger
from bcvlm_client.site_config import SiteConfig, SiteDataConfig
from bcvlm_client.site_data import ledger_terms, summarise_site_data
from bcvlm_model import TASKS
from bcvlm_model.atomic_io import atomic_write_json, atomic_write_text
from bcvlm_model.checkpoint import load_checkpoint
from bcvlm_model.config_io import save_effective_config
from bcvlm_model.data.manifest import MANIFEST_COLUMNS, write_manifest
from bcvlm_model.data.preprocess_config import PreprocessConfig
from bcvlm_model.inference.operating_point import OPERATING_POINTS_KEY
from bcvlm_model.model_config import ModelConfig
from bcvlm_simulation.baseline_checkpoints import (
    BASELINES_DIR,
    pooled_validation_histograms,
    save_with_operating_points,
    validation_aucs,
)
from bcvlm_simulation.baselines import recipe_from_config, train_centralized, train_dp_centralized, train_local_only
from bcvlm_simulation.bootstrap import method_intervals
from bcvlm_simulation.breast_level import breast_level_metrics
from bcvlm_simulation.cohort import load_cohort
from bcvlm_simulation.config import SimulationConfig
from bcvlm_simulation.evaluation import SiteScores, oracle_scores_on_sites, score_model_on_sites, summarise_method
from bcvlm_simulation.federation import (
    read_node_map,
    read_ray_placement,
    run_federation,
    server_config_path,
    site_config_path,
)
from bcvlm_simulation.pretrain import pretrain_on_public
from bcvlm_simulation.ray_health import RayUnavailableError
from bcvlm_simulation.report import build_report
from bcvlm_simulation.round_metrics import final_checkpoint_dir, read_round_metrics
from bcvlm_simulation.site_field_ablation import (
    ablation_differences,
    ablation_text,
    train_and_score_without_site_fields,
)
from bcvlm_simulation.splits import SITE_COLUMN, site_names, split_sites, split_summary


class SimulationError(RuntimeError):
    """The simulation cannot run as configured (the message says what to change)."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch here, and make Ray's worker processes hash-stable."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)


def print_split_summary(summary: pd.DataFrame) -> None:
    """Print the virtual sites as a table."""
    with pd.option_context("display.max_columns", None, "display.width", 200):
        print("\nVirtual sites:\n" + summary.to_string(index=False) + "\n", flush=True)


def write_sites(cfg: SimulationConfig, run_dir: Path, table: pd.DataFrame, cache_dir: str | None) -> list[str]:
    """Write each virtual site's manifest and SiteConfig YAML, and the ServerConfig YAML; return site names."""
    names = site_names(table)
    for index, name in enumerate(names):
        folder = run_dir / "sites" / f"site_{index}"
        rows = table[table[SITE_COLUMN] == name].loc[:, list(MANIFEST_COLUMNS)]
        write_manifest(rows.reset_index(drop=True), folder / "manifest.csv")
        site = SiteConfig(
            site_id=name,
            insecure=True,
            state_dir=str(folder / "state"),
            seed=cfg.seed + 1000 * (index + 1),
            # no cohort cache: the researcher chose to decode on the fly; with one, sites must match server.preprocess
            # val_fraction 0: the split above already holds out `split.val_fraction` (the baselines' validation too)
            data=SiteDataConfig(
                manifest=str(folder / "manifest.csv"),
                cache_dir=cache_dir,
                decode_on_the_fly=cache_dir is None,
                val_fraction=0.0,
            ),
            compute=cfg.site.compute,
            privacy=cfg.site.privacy,
            evaluation=cfg.site.evaluation,
        )
        save_effective_config(site, site_config_path(run_dir, index))
        if site.privacy.enabled:  # a virtual hospital is new in every run: its ledger starts with the run
            init_ledger(site.state_dir, ledger_terms(site, summarise_site_data(site)))
    server = replace(cfg.server, run_dir=str(run_dir / "federated"), seed=cfg.seed)
    save_effective_config(server, server_config_path(run_dir))
    return names


def check_cohort_cache(manifest: pd.DataFrame, cache_dir: str | None, preprocess: PreprocessConfig) -> None:
    """SimulationError naming both settings when the cohort cache lacks arrays made with `server.preprocess`: the
    virtual sites would decline every round (and the baselines decode every DICOM on every epoch)."""
    if cache_dir is None:
        return
    gap = cache_gap(manifest["image_id"], cache_dir, preprocess, what="cohort images")
    if gap is not None:
        raise SimulationError(
            f"cohort.cache_dir: server.preprocess asks for {wanted_preprocess(preprocess)}: {gap}. "
            "Prepare the cohort with the server's preprocess settings, or set cohort.cache_dir=null "
            "to decode the DICOMs on the fly"
        )


def _tables(table: pd.DataFrame, names: list[str], split: str) -> dict[str, pd.DataFrame]:
    rows = table.loc[:, list(MANIFEST_COLUMNS) + [SITE_COLUMN]]
    return {name: rows[(rows[SITE_COLUMN] == name) & (rows["split"] == split)].reset_index(drop=True) for name in names}


def _rounds_with_site_names(rounds: list[dict[str, Any]], node_to_site: dict[str, str]) -> list[dict[str, Any]]:
    renamed = []
    for entry in rounds:
        entry = dict(entry)
        for key in ("site_auc", "epsilon"):
            entry[key] = {node_to_site.get(str(node), str(node)): value for node, value in entry.get(key, {}).items()}
        renamed.append(entry)
    return renamed


def run_simulation_job(cfg: SimulationConfig) -> Path:
    """Run the whole job; return the path of report.html."""
    started = time.perf_counter()
    run_dir = Path(cfg.run_dir).resolve()
    if (run_dir / "metrics.json").exists() and not cfg.overwrite:
        raise SimulationError(f"{run_dir} already holds a finished run; pick another run_dir or set overwrite=true")
    if cfg.pretrain.enabled and cfg.server.init_checkpoint:
        raise SimulationError("pretrain.enabled=true and server.init_checkpoint are both set: pick one start")
    if cfg.baselines.dp_centralized and not cfg.site.privacy.enabled:
        raise SimulationError(
            "baselines.dp_centralized=true trains with the sites' DP budget, but site.privacy.enabled=false: "
            "turn DP on or set baselines.dp_centralized=false"
        )
    if cfg.baselines.no_site_fields:
        try:
            ablation_text(cfg.server.text)
        except ValueError as exc:
            raise SimulationError(str(exc)) from exc
    for stale in ("federated", "sites", "node_map", BASELINES_DIR):
        if (run_dir / stale).exists() and cfg.overwrite:
            shutil.rmtree(run_dir / stale)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_effective_config(cfg, run_dir / "effective_config.yaml")
    seed_everything(cfg.seed)

    manifest, cache_dir = load_cohort(cfg.cohort, cfg.server.preprocess, run_dir / "cohort", cfg.progress)
    check_cohort_cache(manifest, cache_dir, cfg.server.preprocess)
    table = split_sites(manifest, cfg.split)
    summary = split_summary(table)
    atomic_write_text(run_dir / "split_summary.csv", summary.to_csv(index=False))
    atomic_write_json(run_dir / "split_summary.json", summary.to_dict("records"))
    atomic_write_text(
        run_dir / "site_assignment.csv",
        table.loc[:, ["image_id", "patient_id", SITE_COLUMN, "split"]].to_csv(index=False),
    )
    print_split_summary(summary)
    init_checkpoints: dict[str, str] = {}
    if cfg.pretrain.enabled:
        kinds = [cfg.server.model.kind] + (["image_only"] if cfg.baselines.image_only else [])
        init_checkpoints = pretrain_on_public(cfg, kinds)
        cfg = replace(cfg, server=replace(cfg.server, init_checkpoint=init_checkpoints[cfg.server.model.kind]))
    names = write_sites(cfg, run_dir, table, cache_dir)
    if len(names) < 1:
        raise SimulationError("the split produced no virtual site")

    print(
        f"[simulate] federated run: {len(names)} virtual sites, {cfg.server.rounds} rounds "
        f"(DP {'on' if cfg.site.privacy.enabled else 'off'}, SecAgg+ {'on' if cfg.server.secagg.enabled else 'off'})",
        flush=True,
    )
    try:
        federated_seconds = run_federation(
            run_dir, len(names), cfg.resources, cfg.seed, reproducible=cfg.site.privacy.insecure_reproducible_noise
        )
    except RayUnavailableError as exc:
        raise SimulationError(f"federated run stopped: {exc}") from exc
    node_to_site = read_node_map(run_dir)
    ray_nodes = sorted({node for nodes in read_ray_placement(run_dir).values() for node in nodes})
    print(
        f"[simulate] the virtual sites ran on {len(ray_nodes)} Ray node(s) "
        f"({cfg.resources.ray_address or 'local Ray'})",
        flush=True,
    )
    rounds = _rounds_with_site_names(read_round_metrics(run_dir / "federated"), node_to_site)

    tests = _tables(table, names, "test")
    trains = _tables(table, names, "train")
    vals = _tables(table, names, "val")
    server = cfg.server
    n_bins = int(server.evaluation.n_bins)
    batch = cfg.site.compute.eval_batch_size

    scores_of: dict[str, dict[str, SiteScores]] = {}

    def summarised(name: str, per_site: dict[str, SiteScores]) -> dict[str, Any]:
        scores_of[name] = per_site
        return summarise_method(per_site, n_bins)

    def scored(name: str, model: torch.nn.Module, model_cfg: ModelConfig) -> dict[str, Any]:
        return summarised(
            name, score_model_on_sites(model, tests, server.preprocess, server.text, model_cfg, cache_dir, batch)
        )

    validation_of: dict[str, dict[str, Any]] = {}  # method -> task -> pooled validation histogram

    def validated(
        name: str, model: torch.nn.Module, model_cfg: ModelConfig, val_tables: dict[str, pd.DataFrame]
    ) -> dict[str, Any]:
        validation = pooled_validation_histograms(
            model, val_tables, server.preprocess, server.text, model_cfg, cache_dir, batch, n_bins
        )
        for task, histogram in validation.items():  # local-only: each site's own model, pooled like its test scores
            known = validation_of.setdefault(name, {})
            known[task] = known[task] + histogram if task in known else histogram
        return validation

    def checkpointed(
        name: str, model: torch.nn.Module, model_cfg: ModelConfig, val_tables: dict[str, pd.DataFrame], folder: Path
    ) -> dict[str, Any]:
        validation = validated(name, model, model_cfg, val_tables)
        return save_with_operating_points(
            folder,
            model,
            model_cfg,
            server.preprocess,
            server.text,
            validation,
            target_specificity=server.evaluation.specificity,
            min_cases=server.evaluation.min_cases,
            method=name,
        )

    methods: dict[str, Any] = {}
    print("[simulate] scoring the final federated model on every site's test set", flush=True)
    final = load_checkpoint(final_checkpoint_dir(run_dir / "federated"))
    methods["federated"] = scored("federated", final.model, final.model_cfg)
    validated("federated", final.model, final.model_cfg, vals)
    federated_points = final.extra.get(OPERATING_POINTS_KEY) or {}
    methods["federated"]["operating_points"] = {
        "checkpoint": str(final_checkpoint_dir(run_dir / "federated")),
        "chosen_on": "the sites' released validation histograms, pooled by the federated server",
        "tasks": {
            task: {
                "operating_point": federated_points.get(task),
                "withheld": None if task in federated_points else "see operating_points in the last round's metrics",
            }
            for task in TASKS
        },
    }
    # What the server itself saw of the final model: the pooled histogram the sites released (summed under SecAgg+
    # when on), within their bin cap and minimum cell count; `pooled_auc` above is exact, from all test scores.
    methods["federated"]["released_pooled_auc"] = dict(rounds[-1]["pooled_auc"]) if rounds else {}
    methods["federated"]["note"] = (
        f"{server.rounds} rounds x local epochs, DP-SGD per site, "
        f"SecAgg+ {'on' if server.secagg.enabled else 'off'}"
        + (", from public pretraining" if init_checkpoints else "")
    )

    recipe = replace(recipe_from_config(cfg, cache_dir), init_checkpoints=init_checkpoints)
    privacy_note = "DP-SGD, same budget" if cfg.baselines.private else "no DP"
    if init_checkpoints:
        privacy_note += ", from the same public pretraining"
    if cfg.baselines.centralized:
        print("[simulate] baseline: centralized", flush=True)
        centralized = train_centralized(server.model, trains, recipe)
        methods["centralized"] = scored("centralized", centralized, server.model)
        methods["centralized"]["operating_points"] = checkpointed(
            "centralized", centralized, server.model, vals, run_dir / BASELINES_DIR / "centralized"
        )
        methods["centralized"]["note"] = f"union of the sites' training data, same epochs, {privacy_note}"
    if cfg.baselines.dp_centralized:
        print("[simulate] baseline: DP-centralized (all sites' data in one place, one site's DP budget)", flush=True)
        dp_central, spent = train_dp_centralized(server.model, trains, recipe, cfg.site.privacy)
        methods["dp_centralized"] = scored("dp_centralized", dp_central, server.model)
        methods["dp_centralized"]["operating_points"] = checkpointed(
            "dp_centralized", dp_central, server.model, vals, run_dir / BASELINES_DIR / "dp_centralized"
        )
        methods["dp_centralized"]["privacy"] = asdict(spent)
        methods["dp_centralized"]["note"] = (
            f"union of the sites' training data, same epochs, DP-SGD with one site's budget "
            f"(spent epsilon {spent.epsilon_spent:.2f} of {spent.target_epsilon:g}, delta {spent.delta:g}, "
            f"per {spent.unit})" + (", from the same public pretraining" if init_checkpoints else "")
        )
    if cfg.baselines.local_only:
        print("[simulate] baseline: local-only", flush=True)
        per_site: dict[str, Any] = {}
        local_points: dict[str, Any] = {}

        def score_own_site(site: str, model: torch.nn.Module) -> None:
            per_site.update(
                score_model_on_sites(
                    model, {site: tests[site]}, server.preprocess, server.text, server.model, cache_dir, batch
                )
            )
            folder = run_dir / BASELINES_DIR / "local_only" / f"site_{names.index(site)}"
            local_points[site] = checkpointed("local_only", model, server.model, {site: vals[site]}, folder)

        train_local_only(server.model, trains, recipe, score_own_site)
        methods["local_only"] = summarised("local_only", per_site)
        methods["local_only"]["operating_points"] = local_points  # each site's model, on that site's validation
        methods["local_only"]["note"] = f"each site's own model on its own test set, pooled, {privacy_note}"
    if cfg.baselines.image_only:
        print("[simulate] baseline: image-only (fusion ablation)", flush=True)
        image_cfg = replace(server.model, kind="image_only")
        image_only = train_centralized(image_cfg, trains, recipe, label="image-only")
        methods["image_only"] = scored("image_only", image_only, image_cfg)
        methods["image_only"]["operating_points"] = checkpointed(
            "image_only", image_only, image_cfg, vals, run_dir / BASELINES_DIR / "image_only"
        )
        methods["image_only"]["note"] = f"kind=image_only, centralized, same epochs, {privacy_note}"
    ablation_seconds = None
    if cfg.baselines.no_site_fields:
        print("[simulate] baseline: centralized without site fields (site-field ablation)", flush=True)
        ablation_started = time.perf_counter()
        methods["centralized_no_site_fields"] = summarised(
            "centralized_no_site_fields",
            train_and_score_without_site_fields(
                server.model, trains, tests, recipe, server.preprocess, server.text, cache_dir, batch
            ),
        )
        ablation_seconds = round(time.perf_counter() - ablation_started, 1)
        methods["centralized_no_site_fields"]["note"] = (
            f"centralized, report text without manufacturer/machine (text.drop_site_fields), {privacy_note}"
        )
    if init_checkpoints:
        print("[simulate] scoring the public pretrained model (where every method started)", flush=True)
        public = load_checkpoint(init_checkpoints[server.model.kind])
        methods["public_pretrained"] = scored("public_pretrained", public.model, public.model_cfg)
        validated("public_pretrained", public.model, public.model_cfg, vals)
        methods["public_pretrained"]["note"] = "the public checkpoint every method started from, no private data"
    oracle = oracle_scores_on_sites(tests)
    if oracle is not None:
        methods["oracle"] = summarised("oracle", oracle)
        methods["oracle"]["note"] = "synthetic cohort's posterior from the generative latent (best achievable)"

    for name, validation in validation_of.items():
        methods[name]["validation_pooled_auc"] = validation_aucs(validation, server.evaluation.min_cases)
    print(f"[simulate] patient-clustered bootstrap: {cfg.bootstrap_resamples} resamples", flush=True)
    for name, intervals in method_intervals(scores_of, tests, cfg.bootstrap_resamples, cfg.seed).items():
        methods[name].update(intervals)
    if "centralized_no_site_fields" in methods:
        methods["centralized_no_site_fields"].update(
            ablation_differences(scores_of, methods, tests, cfg.bootstrap_resamples, cfg.seed)
        )
    print("[simulate] breast-level AUCs (mean score per patient and side) and their bootstrap", flush=True)
    breast_methods, breast_cases = breast_level_metrics(
        scores_of, tests, n_bins=n_bins, resamples=cfg.bootstrap_resamples, seed=cfg.seed
    )
    for name, breast in breast_methods.items():
        methods[name]["breast"] = breast

    metrics = {
        "tasks": list(TASKS),
        "sites": names,
        "rounds": rounds,
        "methods": methods,
        "split_summary": summary.to_dict("records"),
        "breast_level": {
            **breast_cases,
            "case": "one breast = (patient, laterality): score = mean of its images' scores, label = max of their labels",
        },
        "run": {
            "run_dir": str(run_dir),
            "seed": cfg.seed,
            "num_sites": len(names),
            "rounds": server.rounds,
            "model_kind": server.model.kind,
            "image_size": f"{server.preprocess.image_height}x{server.preprocess.image_width}",
            "dp": cfg.site.privacy.enabled,
            "target_epsilon": cfg.site.privacy.target_epsilon,
            "privacy_unit": cfg.site.privacy.unit.value if cfg.site.privacy.enabled else "none",
            "dp_noise": "insecure-reproducible" if cfg.site.privacy.insecure_reproducible_noise else "secret",
            "secagg": server.secagg.enabled,
            "federated_wall_time_s": round(federated_seconds, 1),
            "ray": cfg.resources.ray_address or "local",
            "ray_nodes_used": len(ray_nodes),
            "public_pretraining": (
                f"{cfg.pretrain.epochs} epochs on {cfg.pretrain.cohort.manifest or 'the synthetic public cohort'}"
                if init_checkpoints
                else "off"
            ),
            "site_field_ablation_wall_time_s": ablation_seconds,
            "wall_time_s": round(time.perf_counter() - started, 1),
        },
        "notes": [
            "Pooled AUC = AUC of the summed per-site score histograms "
            f"({n_bins} bins) on the sites' held-out test patients.",
            "Per-round numbers come from the federated server's round metrics; final numbers re-score the last "
            "global checkpoint with the same evaluation as the baselines.",
        ],
    }
    report = build_report(metrics, run_dir)
    print(
        f"[simulate] done in {metrics['run']['wall_time_s']} s. Report: {report}\n"
        f"[simulate] metrics: {run_dir / 'metrics.json'}",
        flush=True,
    )
    return report
