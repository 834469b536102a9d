"""Render one synthetic mammogram as an attenuation map in [0, 1]: breast shape, power-law texture, mass, calcifications."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bcvlm_model.data.synth.cohort import CALC_VISIBILITY, MASS_VISIBILITY

GLANDULAR_FRACTION = (0.12, 0.3, 0.55, 0.8)  # share of the breast that is fibroglandular, by density A..D
MASS_BASE_AMPLITUDE = 0.8
CALC_BASE_AMPLITUDE = 0.45
CALC_CLUSTER_SPREAD = 0.012  # cluster sd as a share of the image height (~3 mm at 24 cm)
CALC_SPECK_SIGMA = 0.0015  # largest speck sd as a share of the height (~0.35 mm)
# A speck is never narrower than this: sub-pixel specks vanish in resizing and in the encoder's strides. A linear
# probe on the frozen encoder's features told visible clusters from none at 256x128 with AUC 0.78 for 1-px specks,
# 0.84 at 0.9 px and 0.92 at 1.3 px (240 images, 5-fold).
CALC_MIN_SIGMA_PX = 1.3
CALC_MIN_SPREAD_PX = 5.0  # nor the cluster tighter than this, so its specks stay apart at demo size


@dataclass(frozen=True)
class ImageLatents:
    """What goes into one image (standard display: left breast has its chest wall on the left)."""

    view: str
    laterality: str
    density_index: int
    mass_kind: int  # 0 none, 1 malignant, 2 benign mimic
    mass_ratio: float
    calc_visible: bool
    lesion_contrast: float


def power_law_noise(rng: np.random.Generator, height: int, width: int, beta: float) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian noise with power spectrum ~ 1/f^beta (beta ~ 3 for breast tissue)."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    freq = np.sqrt(fx * fx + fy * fy)
    freq[0, 0] = 1.0
    amplitude = freq ** (-beta / 2.0)
    amplitude[0, 0] = 0.0
    spectrum = (rng.normal(size=amplitude.shape) + 1j * rng.normal(size=amplitude.shape)) * amplitude
    field = np.fft.irfft2(spectrum, s=(height, width))
    field -= field.mean()
    return field / (field.std() + 1e-12)


def breast_geometry(
    rng: np.random.Generator, height: int, width: int, view: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thickness profile in [0, 1], normalised radius inside the breast, pectoral mask) with chest wall on the left."""
    y = (np.arange(height)[:, None] + 0.5) / height
    x = (np.arange(width)[None, :] + 0.5) / width
    if view == "MLO":
        centre_y, radius_y, radius_x = rng.uniform(0.42, 0.5), rng.uniform(0.55, 0.62), rng.uniform(0.72, 0.88)
    else:
        centre_y, radius_y, radius_x = rng.uniform(0.45, 0.55), rng.uniform(0.3, 0.4), rng.uniform(0.65, 0.85)
    rho = np.sqrt((x / radius_x) ** 2 + ((y - centre_y) / radius_y) ** 2)
    thickness = np.sqrt(np.clip(1.0 - rho**2, 0.0, 1.0))
    thickness = np.clip(thickness * 2.2, 0.0, 1.0)  # compressed breast: flat inside, falls off at the skin line
    pectoral = np.zeros((height, width), dtype=bool)
    if view == "MLO":
        top_w, depth_h = rng.uniform(0.3, 0.45), rng.uniform(0.35, 0.55)
        pectoral = (x / top_w + y / depth_h) <= 1.0
    return thickness, rho, pectoral


def _place_in_breast(rng: np.random.Generator, rho: np.ndarray, pectoral: np.ndarray, limit: float) -> tuple[int, int]:
    candidates = np.flatnonzero((rho.ravel() < limit) & ~pectoral.ravel())
    if candidates.size == 0:
        candidates = np.flatnonzero(rho.ravel() < 1.0)
    index = int(rng.choice(candidates))
    return divmod(index, rho.shape[1])


def add_mass(
    rng: np.random.Generator, tissue: np.ndarray, rho: np.ndarray, pectoral: np.ndarray, amplitude: float
) -> None:
    """Add an irregular-margin mass (logistic disc with a noisy radius) in place."""
    height, width = tissue.shape
    cy, cx = _place_in_breast(rng, rho, pectoral, 0.7)
    radius = rng.uniform(0.04, 0.06) * height
    yy, xx = np.mgrid[0:height, 0:width]
    dy, dx = yy - cy, xx - cx
    angle = np.arctan2(dy, dx)
    wobble = 1.0 + sum(rng.uniform(0.05, 0.15) * np.cos(k * angle + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5))
    distance = np.sqrt(dy * dy + dx * dx) / (radius * wobble)
    tissue += amplitude / (1.0 + np.exp((distance - 1.0) / 0.12))


def _speck_kernel(sigma: float, fy: float, fx: float, half: int) -> np.ndarray:
    """A Gaussian speck of peak 1 centred at the sub-pixel offset (fy, fx) from the middle of a (2*half+1)^2 patch."""
    offsets = np.arange(-half, half + 1, dtype=float)
    gy = np.exp(-((offsets - fy) ** 2) / (2 * sigma * sigma))
    gx = np.exp(-((offsets - fx) ** 2) / (2 * sigma * sigma))
    return gy[:, None] * gx[None, :]


def add_calcifications(
    rng: np.random.Generator, tissue: np.ndarray, rho: np.ndarray, pectoral: np.ndarray, amplitude: float
) -> None:
    """Add a cluster of 8-20 bright specks (round or linear, some faint) in place.

    A real cluster is about 1 cm across (CALC_CLUSTER_SPREAD) with specks of 0.1-0.5 mm. Below ~1000 rows a
    speck would be sub-pixel and vanish in resizing, so each speck is at least CALC_MIN_SIGMA_PX wide and the cluster
    at least CALC_MIN_SPREAD_PX: at demo size it still shows as separate bright dots, as it does at full resolution.
    """
    height, width = tissue.shape
    cy, cx = _place_in_breast(rng, rho, pectoral, 0.75)
    count = int(rng.integers(8, 21))
    spread = max(CALC_MIN_SPREAD_PX, CALC_CLUSTER_SPREAD * height)
    # Half of the clusters are linear (ductal: along a line), the rest round; both stay ~1 cm across.
    angle = rng.uniform(0.0, np.pi)
    along, across = (1.8 * spread, 0.6 * spread) if rng.random() < 0.5 else (spread, spread)
    for _ in range(count):
        u, v = rng.normal(0.0, along), rng.normal(0.0, across)
        sigma = max(CALC_MIN_SIGMA_PX, rng.uniform(0.3, 0.8) * CALC_SPECK_SIGMA * height)
        half = int(np.ceil(3 * sigma))
        y = float(np.clip(cy + u * np.sin(angle) + v * np.cos(angle), half, height - half - 1))
        x = float(np.clip(cx + u * np.cos(angle) - v * np.sin(angle), half, width - half - 1))
        py, px = int(round(y)), int(round(x))
        kernel = _speck_kernel(sigma, y - py, x - px, half)
        # Faint specks too: a cluster mixes coarse bright and barely visible ones.
        strength = amplitude * rng.uniform(0.4, 1.3)
        tissue[py - half : py + half + 1, px - half : px + half + 1] += strength * kernel


def render_attenuation(latents: ImageLatents, height: int, width: int, seed: int) -> np.ndarray:
    """Attenuation map in [0, 1] (0 = air); laterality 'R' is mirrored so its chest wall is on the right."""
    rng = np.random.default_rng(seed)
    thickness, rho, pectoral = breast_geometry(rng, height, width, latents.view)
    coarse = power_law_noise(rng, height, width, beta=3.0)
    fine = power_law_noise(rng, height, width, beta=2.0)
    fraction = GLANDULAR_FRACTION[latents.density_index]
    # Glandular tissue concentrates behind the nipple: bias the coarse field toward the breast centre.
    biased = coarse + 1.2 * (0.6 - rho)
    level = np.quantile(biased[rho < 1.0], 1.0 - fraction) if np.any(rho < 1.0) else 0.0
    glandular = 1.0 / (1.0 + np.exp(-(biased - level) / 0.35))
    tissue = 0.32 + 0.33 * glandular + 0.05 * fine * (0.5 + glandular)
    if latents.mass_kind > 0:
        amplitude = MASS_BASE_AMPLITUDE * latents.lesion_contrast * MASS_VISIBILITY[latents.density_index]
        add_mass(rng, tissue, rho, pectoral, amplitude * latents.mass_ratio)
    if latents.calc_visible:
        amplitude = CALC_BASE_AMPLITUDE * latents.lesion_contrast * CALC_VISIBILITY[latents.density_index]
        add_calcifications(rng, tissue, rho, pectoral, amplitude)
    image = thickness * tissue
    image = np.where(pectoral, np.maximum(image, 0.78 + 0.04 * fine), image)
    image = np.clip(image, 0.0, 1.0)
    return image[:, ::-1].copy() if latents.laterality == "R" else image
