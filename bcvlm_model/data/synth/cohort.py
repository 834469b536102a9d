"""Latent generative model of the synthetic cohort: patients, breasts, lesions, labels and oracle posteriors."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bcvlm_model.data.synth.config import Population, SynthConfig
from bcvlm_model.data.synth.sites import PUBLIC_SITE, SiteStyle, site_styles

DENSITY_LEVELS = ("A", "B", "C", "D")
MASS_VISIBILITY = np.array([1.0, 0.8, 0.6, 0.42])  # amplitude factor by density (masking)
MASS_OCCULT = np.array([0.08, 0.15, 0.25, 0.4])  # P(malignancy not visible at all) by density
CALC_VISIBILITY = np.array([1.0, 0.85, 0.65, 0.5])
CALC_OCCULT = np.array([0.05, 0.1, 0.2, 0.3])
MIMIC_PROBABILITY = 0.2  # benign mass-like finding in a non-malignant breast
RATIO_SIGMA = 0.3  # log-sd of the lesion amplitude ratio
MIMIC_LOG_RATIO = math.log(0.65)  # benign findings are fainter on average
VIEWS = (("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO"))


@dataclass(frozen=True)
class LatentModel:
    """Calibrated intercepts of the risk model."""

    malignancy_intercept: float
    calcification_intercept: float


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _solve_intercept(offsets: np.ndarray, target: float) -> float:
    """Intercept b with mean(sigmoid(b + offsets)) == target (bisection)."""
    low, high = -20.0, 20.0
    for _ in range(80):
        mid = 0.5 * (low + high)
        if _sigmoid(mid + offsets).mean() < target:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)


def _lognormal_pdf(ratio: np.ndarray, log_mean: float) -> np.ndarray:
    z = (np.log(ratio) - log_mean) / RATIO_SIGMA
    return np.exp(-0.5 * z * z) / (ratio * RATIO_SIGMA * math.sqrt(2 * math.pi))


def malignancy_posterior(
    prior: np.ndarray, density_index: np.ndarray, mass_kind: np.ndarray, ratio: np.ndarray
) -> np.ndarray:
    """P(malignant | metadata prior, what the image shows) under the generative model (the oracle score).

    mass_kind: 0 = no visible mass, 1/2 = a visible mass (malignant/mimic; the oracle only sees its amplitude ratio).
    """
    occult = MASS_OCCULT[density_index]
    visible = mass_kind > 0
    safe_ratio = np.where(visible, ratio, 1.0)
    like1 = np.where(visible, (1 - occult) * _lognormal_pdf(safe_ratio, 0.0), occult)
    like0 = np.where(visible, MIMIC_PROBABILITY * _lognormal_pdf(safe_ratio, MIMIC_LOG_RATIO), 1 - MIMIC_PROBABILITY)
    return prior * like1 / (prior * like1 + (1 - prior) * like0)


def calcification_posterior(prior: np.ndarray, density_index: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """P(suspicious calcification | prior, cluster visible or not) (the oracle score)."""
    occult = CALC_OCCULT[density_index]
    hidden = prior * occult / (prior * occult + (1 - prior))
    return np.where(visible, 1.0, hidden)


def population_styles(cfg: SynthConfig) -> list[SiteStyle]:
    """The site styles patients are drawn from: `n_sites` hospitals, or the one public collection."""
    return [PUBLIC_SITE] if cfg.population == Population.public else site_styles(cfg.n_sites)


def sample_cohort(cfg: SynthConfig) -> pd.DataFrame:
    """One row per image (4 per patient) with metadata, labels, lesion latents and oracle scores; deterministic."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 1]))
    sites = population_styles(cfg)
    age_recorded = cfg.population != Population.public  # a public set's age still drives risk, but is not written
    n = cfg.n_patients
    site_index = rng.integers(0, len(sites), size=n)
    age = np.empty(n)
    vendor = np.empty(n, dtype=object)
    for i, s in enumerate(site_index):
        site = sites[s]
        age[i] = np.clip(np.round(rng.normal(site.age_mean, site.age_sd)), 40, 85)
        weights = np.asarray(site.vendor_weights) / np.sum(site.vendor_weights)
        vendor[i] = site.vendors[rng.choice(len(site.vendors), p=weights)]
    density_latent = -0.045 * (age - 58.0) + rng.normal(0, 1.0, size=n)
    density_index = np.digitize(density_latent, [-1.28, 0.0, 1.28])
    implant = (rng.random(n) < 0.03).astype(float)
    risk_shift = np.array([sites[s].risk_shift for s in site_index])
    # Per breast (2 per patient): risk offsets from metadata, shared by both views of a breast.
    breast_patient = np.repeat(np.arange(n), 2)
    offsets = risk_shift + cfg.age_effect * (age - 60.0) / 10.0 + cfg.density_effect * (density_index - 1.5)
    b_offsets = offsets[breast_patient]
    m_intercept = _solve_intercept(b_offsets, cfg.malignancy_prevalence)
    c_offsets = (0.3 * (age - 60.0) / 10.0)[breast_patient]
    c_intercept = _solve_intercept(c_offsets, cfg.calcification_prevalence)
    prior_m = _sigmoid(m_intercept + b_offsets)
    prior_c = _sigmoid(c_intercept + c_offsets)
    nb = 2 * n
    malignant = rng.random(nb) < prior_m
    b_density = density_index[breast_patient]
    occult = rng.random(nb) < MASS_OCCULT[b_density]
    mimic = ~malignant & (rng.random(nb) < MIMIC_PROBABILITY)
    mass_kind = np.where(malignant & ~occult, 1, np.where(mimic, 2, 0))
    log_ratio = np.where(mass_kind == 1, 0.0, MIMIC_LOG_RATIO) + RATIO_SIGMA * rng.normal(size=nb)
    ratio = np.where(mass_kind > 0, np.exp(log_ratio), np.nan)
    calcified = rng.random(nb) < prior_c
    calc_visible = calcified & (rng.random(nb) >= CALC_OCCULT[b_density])
    oracle_m = malignancy_posterior(prior_m, b_density, mass_kind, np.nan_to_num(ratio, nan=1.0))
    oracle_c = calcification_posterior(prior_c, b_density, calc_visible)
    biopsy = malignant | (mass_kind == 2) & (rng.random(nb) < 0.5) | calc_visible & (rng.random(nb) < 0.3)
    invasive = malignant & (rng.random(nb) < 0.7)
    density_missing = rng.random(n) < cfg.density_missing_fraction
    birads_known = rng.random(nb) < 0.5
    rows = []
    image_counter = 0
    id_rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 2]))
    patient_ids = id_rng.choice(np.arange(10000, 99999), size=n, replace=False)
    for p in range(n):
        site = sites[site_index[p]]
        for laterality, view in VIEWS:
            b = 2 * p + (0 if laterality == "L" else 1)
            image_counter += 1
            recall = mass_kind[b] > 0 or calc_visible[b]
            rows.append(
                {
                    "site_id": site.site_id,
                    "patient_id": str(patient_ids[p]),
                    "image_id": str(100000 + image_counter * 7 + int(patient_ids[p]) % 7),
                    "laterality": laterality,
                    "view": view,
                    "age": float(age[p]) if age_recorded else np.nan,
                    "cancer": int(malignant[b]),
                    "biopsy": int(biopsy[b]),
                    "invasive": int(invasive[b]),
                    "BIRADS": (0 if recall else 1) if birads_known[b] else np.nan,
                    "implant": int(implant[p]),
                    "density": None if density_missing[p] else DENSITY_LEVELS[density_index[p]],
                    "true_density": DENSITY_LEVELS[density_index[p]],
                    "vendor": vendor[p],
                    "difficult_negative_case": bool(biopsy[b] and not malignant[b]),
                    "calcification": int(calcified[b]),
                    "mass_kind": int(mass_kind[b]),
                    "mass_ratio": float(ratio[b]) if mass_kind[b] else np.nan,
                    "calc_visible": bool(calc_visible[b]),
                    "prior_malignancy": float(prior_m[b]),
                    "oracle_malignancy": float(oracle_m[b]),
                    "oracle_calcification": float(oracle_c[b]),
                    "image_seed": int(np.random.SeedSequence([cfg.seed, 3, p, len(rows)]).generate_state(1)[0]),
                }
            )
    return pd.DataFrame(rows)
