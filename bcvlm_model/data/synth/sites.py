"""Synthetic hospital and public-set styles (vendor mix, age mix, prevalence shift) and vendor intensity curves / DICOM
VOI styles."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VendorStyle:
    """How one (fictional but typical) detector stores and windows an image."""

    manufacturer: str
    model: str
    machine_id: str
    bits_stored: int
    photometric: str  # MONOCHROME1 or MONOCHROME2
    gamma: float  # attenuation -> detector value curve exponent
    low_fraction: float  # stored value at zero attenuation, as a fraction of full scale
    high_fraction: float  # stored value at full attenuation
    voi: str  # "window", "window_multi", "sigmoid", "linear_exact", "lut_sequence", "none"
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    standard_orientation_tag: bool = True  # write PatientOrientation (e.g. 'A\\R')


VENDORS: dict[str, VendorStyle] = {
    "hologic": VendorStyle(
        "HOLOGIC, Inc.", "Selenia Dimensions", "49", 12, "MONOCHROME2", 1.0, 0.05, 0.85, "window_multi"
    ),
    "ge": VendorStyle(
        "GE MEDICAL SYSTEMS",
        "Senographe Pristina",
        "93",
        14,
        "MONOCHROME1",
        0.8,
        0.1,
        0.8,
        "sigmoid",
        standard_orientation_tag=False,
    ),
    "siemens": VendorStyle("SIEMENS", "Mammomat Revelation", "21", 12, "MONOCHROME2", 1.25, 0.08, 0.9, "lut_sequence"),
    "fuji": VendorStyle(
        "FUJIFILM Corporation",
        "AMULET Innovality",
        "170",
        10,
        "MONOCHROME1",
        0.9,
        0.05,
        0.95,
        "linear_exact",
        rescale_slope=2.0,
        rescale_intercept=-100.0,
    ),
    "planmed": VendorStyle(
        "Planmed", "Clarity 2D", "216", 14, "MONOCHROME2", 1.1, 0.02, 0.7, "none", standard_orientation_tag=False
    ),
    # Digitized screen-film scanners of public research sets (CBIS-DDSM style): no hospital site uses them, and their
    # intensity curves (film gamma, fog level, saturation) differ from every digital detector above.
    "film_lumisys": VendorStyle(
        "LUMISYS", "Lumiscan 85", "L85", 12, "MONOCHROME2", 0.6, 0.2, 0.98, "window", standard_orientation_tag=False
    ),
    "film_howtek": VendorStyle(
        "HOWTEK", "MultiRAD 850", "H850", 16, "MONOCHROME2", 1.6, 0.12, 0.75, "window", standard_orientation_tag=False
    ),
}
PUBLIC_VENDORS = ("film_lumisys", "film_howtek")
"""Vendors of the public population only (`SynthConfig.population = public`)."""


@dataclass(frozen=True)
class SiteStyle:
    """One virtual hospital: its vendors, age mix and malignancy log-odds shift."""

    site_id: str
    vendors: tuple[str, ...]
    vendor_weights: tuple[float, ...]
    age_mean: float
    age_sd: float
    risk_shift: float


_BASE_SITES = (
    SiteStyle("1", ("hologic", "ge"), (0.7, 0.3), 58.0, 9.0, 0.0),
    SiteStyle("2", ("siemens", "fuji"), (0.6, 0.4), 63.0, 8.0, 0.35),
    SiteStyle("3", ("planmed", "hologic"), (0.7, 0.3), 54.0, 8.0, -0.35),
)


PUBLIC_SITE = SiteStyle("public", PUBLIC_VENDORS, (0.5, 0.5), 57.0, 12.0, 0.0)
"""The public research set: one collection, both film scanners, a broad age mix (never written: no age recorded)."""


def site_styles(n_sites: int) -> list[SiteStyle]:
    """`n_sites` site styles: the three base styles, then variations of them with shifted age and risk."""
    styles = []
    for index in range(n_sites):
        base = _BASE_SITES[index % len(_BASE_SITES)]
        cycle = index // len(_BASE_SITES)
        styles.append(
            SiteStyle(
                str(index + 1),
                base.vendors,
                base.vendor_weights,
                base.age_mean + 2.5 * cycle,
                base.age_sd,
                base.risk_shift - 0.15 * cycle,
            )
        )
    return styles
