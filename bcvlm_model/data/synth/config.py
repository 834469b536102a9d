"""SynthConfig: size, cohort, prevalence, lesion strength and site settings of the synthetic cohort."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bcvlm_model.config_io import to_enum


class TransferSyntax(StrEnum):
    """Values of `transfer_syntax`: how the synthetic DICOMs store their pixels."""

    explicit = "explicit"
    """Uncompressed, explicit VR little endian."""
    rle = "rle"
    jpeg2000 = "jpeg2000"
    """Lossless JPEG 2000."""


class Population(StrEnum):
    """Values of `population`: whom the synthetic cohort stands for."""

    hospitals = "hospitals"
    """Screening hospitals: the site styles (vendors, age mix, risk shift), age recorded."""
    public = "public"
    """A public research set (CBIS-DDSM-like): digitized-film scanners no hospital uses, no age recorded."""


@dataclass
class SynthConfig:
    """Settings of `bcvlm synth` (all randomness flows from `seed`)."""

    n_patients: int = 120
    height: int = 512
    width: int = 256
    n_sites: int = 3
    seed: int = 0
    # Target per-breast prevalences (demo-friendly, not the real ~2 %).
    malignancy_prevalence: float = 0.25
    calcification_prevalence: float = 0.2
    # Multiplies mass and calcification amplitudes: higher = easier to see.
    lesion_contrast: float = 1.0
    # Log-odds of malignancy per 10 years of age above 60, and per density category step.
    age_effect: float = 0.9
    density_effect: float = 0.45
    # Fraction of rows whose density is left empty in train.csv (RSNA: about 46 %).
    density_missing_fraction: float = 0.1
    transfer_syntax: TransferSyntax = TransferSyntax.explicit
    workers: int = 1
    # hospitals = the virtual sites; public = a pretraining set unlike them (other scanners, no age, one "site").
    population: Population = Population.hospitals

    def __post_init__(self) -> None:
        if self.n_patients < 1:
            raise ValueError("SynthConfig.n_patients must be >= 1")
        if self.height < 32 or self.width < 16:
            raise ValueError(f"SynthConfig: size {self.height}x{self.width} too small (min 32x16)")
        if self.n_sites < 1:
            raise ValueError("SynthConfig.n_sites must be >= 1")
        for name in ("malignancy_prevalence", "calcification_prevalence", "density_missing_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"SynthConfig.{name} must be in [0, 1), got {value}")
        if self.lesion_contrast < 0:
            raise ValueError("SynthConfig.lesion_contrast must be >= 0")
        self.transfer_syntax = to_enum(TransferSyntax, self.transfer_syntax, "transfer_syntax")
        self.population = to_enum(Population, self.population, "population")
