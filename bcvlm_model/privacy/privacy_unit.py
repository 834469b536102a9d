"""The DP privacy unit: what one Opacus record is (a patient with all of their images, or a single image)."""

from __future__ import annotations

from enum import Enum


class PrivacyUnit(str, Enum):
    """What DP protects. Members are lower case so a YAML file reads `unit: patient`."""

    patient = "patient"
    """Default: Poisson sampling over patients, each patient's summed image gradients clipped as one record."""
    image = "image"
    """Weaker: each image is a record, so a patient with k images is protected only at group-privacy level k·ε."""


IMAGE_UNIT_WARNING = (
    "privacy unit 'image' is weaker than the default 'patient': each image is one DP record, so a "
    "patient with k images is protected only at k x epsilon (group privacy)"
)
"""Said in the site log, the ledger's terms and the simulation report whenever `unit: image` is chosen."""


def unit_description(unit: PrivacyUnit) -> str:
    """One line for logs and reports naming the unit, and its weakness when it is the image."""
    if unit is PrivacyUnit.image:
        return f"image-level DP ({IMAGE_UNIT_WARNING})"
    return "patient-level DP (each patient, with all of their images, is one record)"
