"""Breast-ultrasound phantoms in the BUSI folder layout (8-bit PNG images and 0/255 masks).

A B-mode image is built as an echogenicity map (skin line, subcutaneous fat with Cooper's
ligaments, a fibroglandular band, retromammary fat, pectoral muscle, ribs with acoustic shadows
and the pleural line with reverberations) times multiplicative, spatially correlated speckle
(the magnitude of low-pass filtered complex Gaussian noise, i.e. Rayleigh-distributed), times a
depth/lateral gain profile, followed by log-like compression to 8 bits.

Lesions are hypoechoic (darker than the tissue around them by ``lesion_contrast``):

- benign: smooth ovals, wider than tall and parallel to the skin, sometimes a thin echogenic rim
  and posterior acoustic enhancement (a third are anechoic, cyst-like, with strong enhancement);
- malignant: irregular, microlobulated or spiculated, taller-than-wide tendency, often an
  echogenic halo and posterior acoustic shadowing;
- normal: no lesion, all-zero mask.

Layout written by :func:`write_us`::

    DIR/benign/benign (1).png, benign (1)_mask.png[, benign (1)_mask_1.png]
    DIR/malignant/malignant (1).png, ...
    DIR/normal/normal (1).png, normal (1)_mask.png
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from sum_monai.phantoms.common import (
    CLASSES,
    assign_class,
    case_rng,
    check_mix,
    low_discrepancy,
    radial_lesion_mask,
    smooth_curve,
    smooth_noise,
    soft_step,
)

__all__ = ["UltrasoundParams", "render_us_case", "us_case_plan", "write_us"]

MODALITY = "us"


@dataclass(frozen=True)
class UltrasoundParams:
    """Difficulty and format settings of the ultrasound phantoms.

    Args:
        size: image ``(rows, cols)`` in pixels (BUSI images are about 500x600; 256x256 keeps
            generation and training fast).
        class_mix: shares of ``(benign, malignant, normal)`` cases (normalised; BUSI has about
            56/27/17 %, the default 45/30/25 gives the minority classes more examples).
        lesion_contrast: how much darker a lesion is than the tissue around it, as a fraction of
            the surrounding echogenicity (0: invisible, 1: anechoic). The default 0.7 makes
            lesions clearly visible, as in most of BUSI; 0.3-0.4 is hard.
        lesion_size: ``(min, max)`` lesion radius as a fraction of the image width.
        noise: speckle strength, 0 (none) to 1 (fully developed Rayleigh speckle).
        attenuation: brightness lost from top to bottom after time-gain compensation (0-0.9).
        second_lesion_rate: share of lesion cases with a second lesion (its own ``_mask_1.png``).
        near_duplicate_rate: share of cases that are near-duplicates (small shift, crop and gain
            change) of an earlier case of the same class, as in BUSI (about 19 %).
        rgb: write images as RGB with R = G = B, like the original BUSI files.
        gain: the scanner's overall gain before log compression (1: the default look; 0.4
            dark, 2.5 bright and saturated): other machines, other presets.
        speckle_grain: speckle grain size relative to the default (a lower-frequency probe
            or a zoomed image: 2-3; a high-frequency linear probe: 0.6).
        overlay: burn in what scanners put on the image: a text banner (probe, depth, gain),
            a depth scale with ticks and caliper crosses at the lesion's ends (white, 255).
    """

    size: tuple[int, int] = (256, 256)
    class_mix: tuple[float, float, float] = (0.45, 0.30, 0.25)
    lesion_contrast: float = 0.7
    lesion_size: tuple[float, float] = (0.07, 0.16)
    noise: float = 1.0
    attenuation: float = 0.35
    second_lesion_rate: float = 0.08
    near_duplicate_rate: float = 0.0
    rgb: bool = False
    gain: float = 1.0
    speckle_grain: float = 1.0
    overlay: bool = False

    def __post_init__(self) -> None:
        rows, cols = self.size
        if min(rows, cols) < 32:
            raise ValueError(f"size must be at least 32x32, got {self.size}")
        check_mix(self.class_mix)
        if not 0.0 <= self.lesion_contrast <= 1.0:
            raise ValueError(f"lesion_contrast must be in [0, 1], got {self.lesion_contrast}")
        lo, hi = self.lesion_size
        if not 0.01 <= lo <= hi <= 0.3:
            raise ValueError(f"lesion_size must satisfy 0.01 <= min <= max <= 0.3, got {self.lesion_size}")
        if not 0.0 <= self.noise <= 1.0:
            raise ValueError(f"noise (speckle strength) must be in [0, 1], got {self.noise}")
        if not 0.0 <= self.attenuation <= 0.9:
            raise ValueError(f"attenuation must be in [0, 0.9], got {self.attenuation}")
        if not 0.1 <= self.gain <= 10.0 or not 0.25 <= self.speckle_grain <= 5.0:
            raise ValueError(f"gain must be in [0.1, 10] and speckle_grain in [0.25, 5], got {self.gain}, {self.speckle_grain}")
        for name in ("second_lesion_rate", "near_duplicate_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


# ----------------------------------------------------------------------------------------------
# tissue


def _tissue(rng: np.random.Generator, rows: int, cols: int) -> tuple[np.ndarray, float]:
    """Echogenicity map of normal breast tissue, roughly in [0, 1] (before speckle).

    Returns:
        The map and the median depth (fraction of the image height) of the fibroglandular
        band's lower edge, below which no lesion is centred.
    """
    y = (np.arange(rows, dtype=np.float32) / rows)[:, None]
    x = np.arange(cols, dtype=np.float32) / cols
    sx = cols / 256.0  # texture scales with image size
    sy = rows / 256.0
    px = 1.0 / rows  # one pixel in depth units

    skin = 0.02 + rng.uniform(0.0, 0.02) + smooth_curve(rng, cols, 0.006)
    tilt = rng.normal(0.0, 0.06) * (x - 0.5)  # layers often run obliquely across the image
    fat_end = rng.uniform(0.14, 0.32) + smooth_curve(rng, cols, 0.04, n_waves=2) + tilt
    fgt_end = fat_end + rng.uniform(0.22, 0.40) + smooth_curve(rng, cols, 0.03, n_waves=2) + tilt
    muscle_start = fgt_end + rng.uniform(0.03, 0.08) + smooth_curve(rng, cols, 0.01, n_waves=2)
    muscle_end = muscle_start + rng.uniform(0.08, 0.15) + smooth_curve(rng, cols, 0.01, n_waves=2)

    # subcutaneous fat: dark, laterally elongated lobules framed by bright Cooper's ligaments
    lob = smooth_noise(rng, (rows, cols), (4 * sy, 9 * sx))
    fat = 0.22 + 0.04 * smooth_noise(rng, (rows, cols), (2 * sy, 4 * sx))
    fat += 0.25 * np.exp(-(((lob - 0.3) / 0.22) ** 2)) + 0.10 * soft_step(0.3 - lob, 0.2)
    # fibroglandular band: bright, streaky, with islands of fat and a few dark ducts
    isl = smooth_noise(rng, (rows, cols), (3 * sy, 8 * sx))
    fgt = 0.58 + 0.12 * smooth_noise(rng, (rows, cols), (1.2 * sy, 5 * sx))
    islands = soft_step(isl - 1.0, 0.12)
    fgt = fgt * (1 - islands) + 0.22 * islands + 0.12 * np.exp(-(((isl - 1.0) / 0.15) ** 2))
    fgt -= 0.25 * np.exp(-((smooth_noise(rng, (rows, cols), (3 * sy, 12 * sx)) / 0.1) ** 2))
    retro = 0.18 + 0.04 * smooth_noise(rng, (rows, cols), (2 * sy, 8 * sx))
    # pectoral muscle: mid-grey with fine oblique-horizontal striations
    muscle = 0.40 + 0.12 * smooth_noise(rng, (rows, cols), (0.8 * sy, 14 * sx))

    edge = 2.0 * px
    tissue = fat
    tissue = tissue + (fgt - tissue) * soft_step(y - fat_end, 4 * edge)
    tissue = tissue + (retro - tissue) * soft_step(y - fgt_end, 3 * edge)
    tissue = tissue + (muscle - tissue) * soft_step(y - muscle_start, edge)
    # fascia lines at the muscle boundaries and the skin line
    tissue += 0.35 * np.exp(-(((y - muscle_start) / (1.5 * px)) ** 2))
    tissue += 0.6 * np.exp(-(((y - skin) / (1.5 * px)) ** 2)) + 0.15 * ((y > skin) & (y < skin + 0.015))
    tissue = np.where(y < skin - 2 * px, 0.05, tissue)  # coupling gel / near field

    # chest wall below the muscle: the pleural line with reverberations, sometimes a rib
    deep = soft_step(y - muscle_end, edge)
    pleura = muscle_end + 0.012
    chest = 0.10 + 0.025 * smooth_noise(rng, (rows, cols), (1 * sy, 20 * sx))
    chest = chest + 0.35 * np.exp(-(((y - pleura) / (1.5 * px)) ** 2))
    for k in range(1, 3):  # reverberation A-lines below the pleura, fading
        chest += 0.06 / k * np.exp(-(((y - pleura - k * (pleura - skin)) / (1.5 * px)) ** 2))
    if rng.random() < 0.35:
        rx = rng.uniform(0.15, 0.85)
        half = rng.uniform(0.09, 0.16)
        arch = muscle_end + 0.004 + 0.03 * ((x - rx) / half) ** 2
        lateral = soft_step(half - np.abs(x - rx), 0.02)
        surface = 0.6 * np.exp(-(((y - arch) / (2.0 * px)) ** 2))
        shadow = soft_step(y - arch - 3 * px, 2 * px)
        chest = chest * (1 - lateral * shadow * 0.85) + surface * lateral
    tissue = tissue * (1 - deep) + chest * deep
    return np.clip(tissue, 0.02, None).astype(np.float32), float(np.median(fgt_end))


# ----------------------------------------------------------------------------------------------
# lesions


def _lesion_shape(
    rng: np.random.Generator,
    label: str,
    shape: tuple[int, int],
    radius: float,
    fill: np.ndarray,
    deepest: float,
) -> tuple[np.ndarray, dict[str, Any]] | None:
    """Draw one lesion of ``label`` inside the breast tissue (centre above ``deepest``, a
    fraction of the height), not touching the image border or the ``fill`` mask."""
    rows, cols = shape
    if label == "benign":
        aspect = rng.uniform(1.3, 2.0)  # wider than tall, parallel to the skin
        angle = rng.normal(0.0, 0.12)
        harmonics = [(rng.normal(0.0, 0.03), rng.uniform(0, 2 * math.pi)) for _ in range(4)]
        if rng.random() < 0.3:  # gently macrolobulated
            harmonics[1] = (rng.uniform(0.04, 0.08), rng.uniform(0, 2 * math.pi))
        spicules: list[tuple[float, float, float]] = []
    else:
        aspect = rng.uniform(0.7, 1.15)  # taller-than-wide tendency
        angle = rng.normal(0.0, 0.3)
        harmonics = [(rng.normal(0.0, 0.10) / math.sqrt(k), rng.uniform(0, 2 * math.pi)) for k in range(1, 8)]
        harmonics += [(rng.normal(0.0, 0.035), rng.uniform(0, 2 * math.pi)) for _ in range(6)]
        spicules = []
        if rng.random() < 0.5:
            for _ in range(int(rng.integers(6, 14))):
                spicules.append(
                    (rng.uniform(-math.pi, math.pi), rng.uniform(0.2, 0.55), rng.uniform(0.06, 0.12))
                )
    spike = max([s[1] for s in spicules], default=0.0)
    for attempt in range(30):
        r = radius * 0.96**attempt  # shrink a lesion that does not fit
        reach_y = r * max(1.0, 1.0 / aspect) * (1.3 + spike) + 3
        reach_x = r * max(1.0, aspect) * (1.3 + spike) + 3
        lo_y = min(max(0.18 * rows, reach_y), rows / 2)
        hi_y = min(min(0.68, deepest) * rows, rows - reach_y)
        cy = rng.uniform(lo_y, max(hi_y, lo_y))
        cx = rng.uniform(
            min(max(0.15 * cols, reach_x), cols / 2), max(min(0.85 * cols, cols - reach_x), cols / 2)
        )
        if attempt >= 20 and not fill.any():  # last resort for a lone lesion: the image centre
            cy, cx = rows * 0.45, cols * 0.5
        mask = radial_lesion_mask(shape, (cy, cx), r, aspect, angle, harmonics, spicules)
        border = mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()
        if mask.sum() > 20 and not border and not (ndimage.binary_dilation(mask, iterations=4) & fill).any():
            return mask, {"center": (cy, cx), "radius": r, "spiculated": bool(spicules)}
    return None


def _posterior(mask: np.ndarray, decay: float) -> np.ndarray:
    """Column-wise profile below a lesion (1 just under it, fading with depth), for shadows."""
    rows, _ = mask.shape
    has = mask.any(axis=0)
    bottom = np.where(has, rows - 1 - np.argmax(mask[::-1], axis=0), 0)
    r = np.arange(rows, dtype=np.float32)[:, None]
    below = r - bottom[None, :]
    prof = np.where((below > 0) & has[None, :], np.exp(-np.clip(below, 0, None) / decay), 0.0)
    ramp = np.clip(below / (8.0 * rows / 256), 0.0, 1.0)  # shadows build up below the edge
    return ndimage.gaussian_filter1d((prof * ramp).astype(np.float32), 1.5, axis=1)


def _add_lesion(
    rng: np.random.Generator, echo: np.ndarray, mask: np.ndarray, label: str, contrast: float
) -> np.ndarray:
    """Darken ``echo`` inside ``mask`` and add rim / halo and posterior enhancement or shadow."""
    rows, cols = echo.shape
    radius = math.sqrt(mask.sum() / math.pi)
    ring = ndimage.binary_dilation(mask, iterations=max(3, int(radius * 0.6))) & ~mask
    ref = float(np.median(echo[ring])) if ring.any() else float(echo.mean())
    cyst = label == "benign" and rng.random() < 0.3
    level = ref * (1.0 - contrast) * (0.35 if cyst else 1.0)
    hetero = 0.08 if label == "benign" else 0.25
    inner = level * (1.0 + hetero * smooth_noise(rng, (rows, cols), 1.5 * cols / 256))
    if label == "malignant":  # a few internal echoes / microcalcifications
        inner += level * 0.5 * (rng.random((rows, cols)) < 0.004)
    soft = ndimage.gaussian_filter(mask.astype(np.float32), 0.7 if label == "benign" else 1.2)
    out = echo * (1.0 - soft) + np.clip(inner, 0.0, None) * soft
    width = max(2, round(radius * 0.12))
    if label == "benign" and rng.random() < 0.4:  # thin echogenic capsule
        rim = ndimage.binary_dilation(mask, iterations=2) & ~mask
        out += 0.25 * ndimage.gaussian_filter(rim.astype(np.float32), 0.7)
    if label == "malignant" and rng.random() < 0.4:  # ill-defined echogenic halo
        halo = ndimage.binary_dilation(mask, iterations=width + 1) & ~mask
        out += 0.12 * ndimage.gaussian_filter(halo.astype(np.float32), width * 0.8)
    if label == "benign" and (cyst or rng.random() < 0.6):
        out *= 1.0 + (0.6 if cyst else 0.3) * _posterior(mask, decay=0.35 * rows)
    elif label == "malignant" and rng.random() < 0.7:
        out *= 1.0 - rng.uniform(0.25, 0.45) * _posterior(mask, decay=0.6 * rows)
    return out


# ----------------------------------------------------------------------------------------------
# image formation


def _speckle(rng: np.random.Generator, shape: tuple[int, int], strength: float, grain: float = 1.0) -> np.ndarray:
    """Multiplicative speckle with mean 1, as a compounding scanner shows it.

    Each look is the magnitude of low-pass filtered complex Gaussian noise (Rayleigh speckle,
    grains longer laterally, like a linear probe); three looks are averaged (spatial
    compounding), which softens the dark nulls as on modern breast scanners.
    """
    rows, cols = shape
    sy, sx = grain * rows / 256, grain * cols / 256
    looks = []
    for lateral in (1.6, 2.0, 2.4):
        sigma = (0.9 * sy, lateral * sx)
        re = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
        im = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
        looks.append(re**2 + im**2)
    mag = np.sqrt(np.mean(looks, axis=0))
    mag /= mag.mean()
    return 1.0 + strength * (mag - 1.0)


def _form_image(rng: np.random.Generator, echo: np.ndarray, params: UltrasoundParams) -> np.ndarray:
    """Speckle, gain profile and log-like compression: echogenicity -> display values in [0, 1]."""
    rows, cols = echo.shape
    y = (np.arange(rows, dtype=np.float32) / rows)[:, None]
    x = (np.arange(cols, dtype=np.float32) / cols)[None, :]
    gain = (1.0 - params.attenuation * y**1.3) * (1.0 - 0.15 * np.abs(2 * x - 1) ** 4)
    gain = gain * rng.uniform(0.85, 1.1) * params.gain
    amp = echo * _speckle(rng, (rows, cols), params.noise, params.speckle_grain) * gain
    k = 2.0  # log-like compression: 0 -> 0, 1 -> ~0.85, bright speckle saturates softly
    return np.clip(np.log1p(k * amp) / math.log1p(k * 1.3), 0.0, 1.0)


def render_us_case(
    rng: np.random.Generator, label: str, params: UltrasoundParams
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Render one ultrasound case.

    Args:
        rng: the case's generator (see :func:`~sum_monai.phantoms.common.case_rng`).
        label: ``"benign"``, ``"malignant"`` or ``"normal"``.
        params: difficulty settings.

    Returns:
        ``(image, masks)``: image as float32 ``(rows, cols)`` in [0, 1]; one boolean mask per
        lesion (empty list for normal cases).
    """
    rows, cols = params.size
    echo, deepest = _tissue(rng, rows, cols)
    masks: list[np.ndarray] = []
    if label != "normal":
        n_lesions = 2 if rng.random() < params.second_lesion_rate else 1
        lo, hi = params.lesion_size
        for k in range(n_lesions):
            radius = rng.uniform(lo, hi) * cols * (1.0 if k == 0 else 0.6)
            fill = np.any(masks, axis=0) if masks else np.zeros((rows, cols), bool)
            drawn = _lesion_shape(rng, label, (rows, cols), radius, fill, deepest)
            if drawn is not None:
                masks.append(drawn[0])
        for mask in masks:
            echo = _add_lesion(rng, echo, mask, label, params.lesion_contrast)
    image = _form_image(rng, echo, params).astype(np.float32)
    if params.overlay:
        image = burn_overlay(image, masks, np.random.default_rng(rng.integers(2**32)))
    return image, masks


def burn_overlay(image: np.ndarray, masks: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """``image`` with a scanner's burned-in text banner, depth scale and caliper crosses (value 1.0).

    The calipers sit at the left and right ends of the first lesion, as a sonographer measures it;
    the masks are unchanged (the annotation is not part of the lesion).
    """
    from PIL import Image, ImageDraw

    rows, cols = image.shape
    canvas = Image.fromarray(np.round(image * 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    depth = rng.uniform(3.0, 6.0)
    draw.text((4, 2), f"L12-5 {rng.integers(8, 15)}MHz  D {depth:.1f}cm  G {rng.integers(40, 70)}%  BREAST", fill=255)
    for k in range(int(depth) + 1):  # depth scale: a tick per cm on the right edge
        y = round(k / depth * (rows - 1))
        draw.line([(cols - 8, y), (cols - 2, y)], fill=255)
    draw.line([(cols - 2, 0), (cols - 2, rows - 1)], fill=255)
    if masks:
        ys, xs = np.nonzero(masks[0])
        for x in (xs.min(), xs.max()):
            y = int(ys[xs == x].mean())
            draw.line([(x - 4, y), (x + 4, y)], fill=255)
            draw.line([(x, y - 4), (x, y + 4)], fill=255)
    return np.asarray(canvas, dtype=np.float32) / 255.0


def _near_duplicate(
    rng: np.random.Generator, image: np.ndarray, masks: list[np.ndarray]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """A near-duplicate: the same scan slightly shifted, zoomed (cropped) and with another gain."""
    rows, cols = image.shape
    zoom = rng.uniform(1.0, 1.06)
    shift = rng.uniform(-0.03, 0.03, 2) * (rows, cols)
    center = np.array([rows, cols]) / 2.0
    matrix = np.eye(2) / zoom
    offset = center - matrix @ (center + shift)
    out = ndimage.affine_transform(image, matrix, offset=offset, order=1, mode="nearest")
    out = np.clip(out * rng.uniform(0.88, 1.12) + rng.normal(0.0, 0.01, out.shape), 0.0, 1.0)
    new_masks = [
        ndimage.affine_transform(m.astype(np.float32), matrix, offset=offset, order=0, mode="constant") > 0.5
        for m in masks
    ]
    return out.astype(np.float32), [m for m in new_masks if m.any()]


# ----------------------------------------------------------------------------------------------
# the folder


def us_case_plan(n: int, seed: int, params: UltrasoundParams) -> list[dict[str, Any]]:
    """Class, file stem and near-duplicate source of every case, without rendering anything.

    Returns:
        One dict per case: ``index``, ``label``, ``stem`` (e.g. ``"benign (3)"``) and
        ``duplicate_of`` (index of the original case, or ``None``).
    """
    counters = dict.fromkeys(CLASSES, 0)
    originals: dict[str, list[int]] = {c: [] for c in CLASSES}
    plan: list[dict[str, Any]] = []
    for i in range(n):
        label = assign_class(low_discrepancy(seed, "us-class", i), params.class_mix)
        counters[label] += 1
        pick = case_rng(seed, MODALITY, i, "near-duplicate")
        wants_dup = pick.random() < params.near_duplicate_rate
        source = None
        if wants_dup and originals[label]:
            source = originals[label][int(pick.integers(len(originals[label])))]
        else:
            originals[label].append(i)
        plan.append(
            {"index": i, "label": label, "stem": f"{label} ({counters[label]})", "duplicate_of": source}
        )
    return plan


def write_us(
    root: Path, n: int, seed: int, params: UltrasoundParams, progress: bool = True
) -> tuple[list[Path], list[dict[str, Any]]]:
    """Write ``n`` ultrasound cases in the BUSI layout under ``root`` (which must exist).

    Returns:
        The written files and one manifest record per case (class, files, near-duplicate source).
    """
    from tqdm import tqdm

    from sum_monai.io.writers import save_png

    plan = us_case_plan(n, seed, params)
    written: list[Path] = []
    records: list[dict[str, Any]] = []
    for case in tqdm(plan, desc="ultrasound phantoms", unit="case", disable=not progress):
        label, source = case["label"], case["duplicate_of"]
        if source is None:
            image, masks = render_us_case(case_rng(seed, MODALITY, case["index"]), label, params)
        else:
            image, masks = render_us_case(case_rng(seed, MODALITY, source), label, params)
            image, masks = _near_duplicate(case_rng(seed, MODALITY, case["index"], "shift"), image, masks)
        pixels = np.round(image * 255.0).astype(np.uint8)
        if params.rgb:
            pixels = np.repeat(pixels[:, :, None], 3, axis=2)
        folder = root / label
        stem = case["stem"]
        files = [save_png(folder / f"{stem}.png", pixels)]
        empty = np.zeros(params.size, np.uint8)
        mask_list = masks or [empty.astype(bool)]
        for k, mask in enumerate(mask_list):
            suffix = "_mask" if k == 0 else f"_mask_{k}"
            files.append(save_png(folder / f"{stem}{suffix}.png", mask.astype(np.uint8) * 255))
        written += files
        records.append(
            {
                "image": files[0].relative_to(root).as_posix(),
                "masks": [f.relative_to(root).as_posix() for f in files[1:]],
                "label": label,
                "near_duplicate_of": None if source is None else f"{label}/{plan[source]['stem']}.png",
            }
        )
    return written, records
