"""Shared pieces of the phantom generators: seeding, class assignment, noise and lesion shapes.

Seeding: every case draws from its own generator seeded by ``(seed, modality, index)``
(:func:`case_rng`), so case ``i`` is the same file whether 10 or 1000 cases are generated.
Classes come from a low-discrepancy sequence (:func:`assign_class`), so every prefix of the case
list follows the class mix closely instead of only on average.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = [
    "CLASSES",
    "assign_class",
    "blob_mask_3d",
    "case_rng",
    "check_mix",
    "low_discrepancy",
    "radial_lesion_mask",
    "smooth_curve",
    "smooth_noise",
    "soft_step",
    "stable_uid",
]

#: Class names of the 2D modalities, in the order of every ``class_mix`` tuple.
CLASSES: tuple[str, str, str] = ("benign", "malignant", "normal")

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0  # 0.618..., the additive recurrence with the best spread


def _digest_int(*parts: object, bits: int = 64) -> int:
    """Stable integer hash of ``parts`` (Python's ``hash`` is salted per process)."""
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[: bits // 8], "little")


def case_rng(seed: int, modality: str, index: int, stream: str = "") -> np.random.Generator:
    """Return the random generator of one case.

    Args:
        seed: the run's seed (any non-negative int).
        modality: ``"us"``, ``"mammo"`` or ``"mri"`` (different streams per modality).
        index: 0-based case index.
        stream: optional sub-stream name, for independent draws inside one case.

    Example:
        >>> float(case_rng(0, "us", 3).random()) == float(case_rng(0, "us", 3).random())
        True
    """
    if seed < 0 or index < 0:
        raise ValueError("seed and index must be non-negative")
    return np.random.default_rng(np.random.SeedSequence([seed, _digest_int(modality, stream), index]))


def low_discrepancy(seed: int, key: str, index: int) -> float:
    """The ``index``-th value in [0, 1) of a golden-ratio sequence with a seeded offset.

    Any run of consecutive values is spread almost evenly over [0, 1), which makes shares
    (class mix, MONOCHROME1 rate) hold closely even for a handful of cases.
    """
    offset = _digest_int(seed, key) / 2.0**64
    return (offset + index * _GOLDEN) % 1.0


def assign_class(u: float, mix: Sequence[float], classes: Sequence[str] = CLASSES) -> str:
    """Map ``u`` in [0, 1) to a class by the cumulative shares ``mix`` (normalised here)."""
    total = float(sum(mix))
    acc = 0.0
    for name, share in zip(classes, mix, strict=True):
        acc += share / total
        if u < acc:
            return name
    return classes[-1]


def check_mix(mix: Sequence[float], n_classes: int = 3) -> tuple[float, ...]:
    """Validate a class mix (non-negative, positive sum) and return it normalised."""
    values = tuple(float(v) for v in mix)
    if len(values) != n_classes or any(v < 0 for v in values) or sum(values) <= 0:
        raise ValueError(f"class_mix needs {n_classes} non-negative shares with a positive sum, got {mix}")
    total = sum(values)
    return tuple(v / total for v in values)


def smooth_noise(
    rng: np.random.Generator, shape: Sequence[int], sigma: float | Sequence[float]
) -> np.ndarray:
    """Band-limited Gaussian noise: white noise low-pass filtered, then zero mean and unit std.

    Args:
        rng: the generator to draw from.
        shape: output shape (2D or 3D).
        sigma: Gaussian filter width in pixels, one value or one per axis; larger means smoother.
    """
    noise = rng.standard_normal(tuple(shape)).astype(np.float32)
    noise = ndimage.gaussian_filter(noise, sigma, mode="reflect")
    noise -= noise.mean()
    std = float(noise.std())
    return noise / std if std > 0 else noise


def smooth_curve(rng: np.random.Generator, n: int, amplitude: float, n_waves: int = 3) -> np.ndarray:
    """A smooth random 1D profile of length ``n`` (sum of a few low-frequency sines)."""
    t = np.linspace(0.0, 1.0, n, dtype=np.float32)
    curve = np.zeros(n, np.float32)
    for k in range(1, n_waves + 1):
        curve += rng.normal(0.0, 1.0 / k) * np.sin(np.pi * k * t + rng.uniform(0, 2 * np.pi))
    peak = float(np.abs(curve).max()) or 1.0
    return amplitude * curve / peak


def soft_step(x: np.ndarray, width: float) -> np.ndarray:
    """Smooth 0 -> 1 transition at ``x = 0`` with the given width (a logistic)."""
    return 1.0 / (1.0 + np.exp(-np.clip(x / max(width, 1e-6), -30, 30)))


def radial_lesion_mask(
    shape: tuple[int, int],
    center: tuple[float, float],
    radius: float,
    aspect: float,
    angle: float,
    harmonics: Sequence[tuple[float, float]] = (),
    spicules: Sequence[tuple[float, float, float]] = (),
) -> np.ndarray:
    """Rasterise a star-shaped lesion whose border is ``r(theta)`` around ``center``.

    The border is an ellipse (``radius`` along the lesion's own x axis, ``radius / aspect``
    along its y axis, rotated by ``angle``) modulated by Fourier ``harmonics`` (smooth lobulation
    or irregularity) and narrow ``spicules`` (thin tapered spikes). Sharing the shape parameters
    renders the same lesion in several views.

    Args:
        shape: output ``(rows, cols)``.
        center: ``(row, col)`` of the lesion centre in pixels.
        radius: half-width of the lesion in pixels before modulation.
        aspect: width / height; above 1 is wider than tall.
        angle: rotation in radians (counter-clockwise in image display).
        harmonics: ``(amplitude, phase)`` for k = 2, 3, ...: relative radius change
            ``amplitude * cos(k * theta + phase)``.
        spicules: ``(theta, length, width)``: a spike at angle ``theta`` (radians), ``length``
            times the radius long and ``width`` radians wide at its base.

    Returns:
        Boolean mask of ``shape``.
    """
    rows, cols = shape
    cy, cx = center
    reach = radius * (1.0 + sum(abs(a) for a, _ in harmonics) + max([s[1] for s in spicules], default=0.0))
    reach = reach * max(aspect, 1.0 / aspect) + 2
    r0, r1 = max(0, int(cy - reach)), min(rows, int(cy + reach) + 2)
    c0, c1 = max(0, int(cx - reach)), min(cols, int(cx + reach) + 2)
    mask = np.zeros(shape, bool)
    if r0 >= r1 or c0 >= c1:
        return mask
    yy, xx = np.mgrid[r0:r1, c0:c1].astype(np.float32)
    dy, dx = -(yy - cy), xx - cx  # y up, so positive angles turn counter-clockwise on screen
    ca, sa = math.cos(angle), math.sin(angle)
    u = ca * dx + sa * dy
    v = (-sa * dx + ca * dy) * aspect
    rho = np.hypot(u, v)
    theta = np.arctan2(v, u)
    border = np.ones_like(theta)
    for k, (amp, phase) in enumerate(harmonics, start=2):
        border += amp * np.cos(k * theta + phase)
    for s_theta, length, width in spicules:
        d = np.abs(np.angle(np.exp(1j * (theta - s_theta))))
        border += length * np.clip(1.0 - d / width, 0.0, None) ** 3
    mask[r0:r1, c0:c1] = rho <= radius * border
    return mask


def blob_mask_3d(
    rng: np.random.Generator,
    coords: tuple[np.ndarray, np.ndarray, np.ndarray],
    center: Sequence[float],
    radius: float,
    n_lobes: int,
    spacing: Sequence[float],
) -> np.ndarray:
    """A lobulated 3D mass: the union of ``n_lobes`` random ellipsoids, with a smoothed surface.

    Args:
        rng: generator for the lobe sizes and positions.
        coords: physical coordinates (mm) of every voxel, as from ``np.meshgrid(..., indexing="ij")``.
        center: mass centre in the same physical coordinates.
        radius: overall radius in mm (the main lobe's mean semi-axis).
        n_lobes: number of ellipsoids (1 gives a smooth oval mass).
        spacing: voxel spacing in mm, to smooth the surface over about 1 mm.

    Returns:
        Boolean mask of the grid's shape.
    """
    field = np.full(coords[0].shape, -1.0, np.float32)
    for lobe in range(n_lobes):
        if lobe == 0:
            c = np.asarray(center, np.float32)
            semi = radius * rng.uniform(0.8, 1.2, 3)
        else:
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            c = np.asarray(center, np.float32) + direction * radius * rng.uniform(0.5, 0.9)
            semi = radius * rng.uniform(0.4, 0.7, 3)
        # random orientation: rotate coordinates with a random orthogonal matrix
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        d = [coords[i] - c[i] for i in range(3)]
        inside = np.zeros_like(field)
        for row in range(3):
            proj = q[row, 0] * d[0] + q[row, 1] * d[1] + q[row, 2] * d[2]
            inside += (proj / semi[row]) ** 2
        field = np.maximum(field, np.clip(1.0 - inside, -1.0, 1.0))
    sigma = [1.0 / max(s, 1e-3) for s in spacing]
    field = ndimage.gaussian_filter(field, sigma)
    return field > 0.0


def stable_uid(*parts: object) -> str:
    """A deterministic DICOM UID (pydicom root + SHA-512 of ``parts``) for reproducible files."""
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=["sum_monai.phantoms", *(f"{p}\x1f" for p in parts)]))
