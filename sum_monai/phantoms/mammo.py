"""Mammography phantoms: DICOM MG "for presentation" images, lesion masks and a case table.

Each patient has 2-4 images: CC and MLO views of one or both breasts. A lesion belongs to a
breast and appears in both of its views (same pathology, same shape, position matched by its
distance from the nipple), so splits must group by patient. Image content (display values,
bright = dense):

- breast outline: a compressed half-ellipse from the chest wall (with the axillary tail on MLO),
  thinner and darker towards the skin, with a thin skin line;
- fat-dominated periphery and fibroglandular tissue: band-limited noise streaked radially
  towards the nipple, denser towards the chest wall and the centre of the breast;
- the pectoral muscle as a bright triangle at the upper chest-wall corner of MLO views;
- benign masses: circumscribed round / oval, moderate density;
- malignant masses: irregular, denser, with radiating spicules (the mask covers the mass body,
  not the spicules) and sometimes microcalcifications; normal images: no lesion.

Display convention: left breast with the chest wall at the image's left edge and the nipple
pointing right; right breast mirrored. Pixel data are 16-bit allocated, 12-bit stored; about
half of the patients' images are MONOCHROME1 (stored inverted: dense tissue = low values).

Layout written by :func:`write_mammo`::

    DIR/images/PH0001_L_CC.dcm      DIR/masks/PH0001_L_CC_mask.png (0/255, same rows x cols)
    DIR/cases.csv                   image,mask,patient_id,laterality,view,pathology
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from sum_monai.phantoms.common import (
    assign_class,
    case_rng,
    check_mix,
    low_discrepancy,
    radial_lesion_mask,
    smooth_curve,
    smooth_noise,
    soft_step,
    stable_uid,
)

__all__ = ["CSV_COLUMNS", "MG_SOP_CLASS", "MammoParams", "render_mammo_view", "write_mammo"]

MODALITY = "mammo"
#: Digital Mammography X-Ray Image Storage - For Presentation.
MG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.2"
CSV_COLUMNS = ("image", "mask", "patient_id", "laterality", "view", "pathology")
#: PatientOrientation (row direction \\ column direction) per laterality and view.
ORIENTATION = {("L", "CC"): "A\\R", ("L", "MLO"): "A\\F", ("R", "CC"): "P\\L", ("R", "MLO"): "P\\F"}
VIEW_CODES = {
    "CC": ("399162004", "SCT", "cranio-caudal"),
    "MLO": ("399368009", "SCT", "medio-lateral oblique"),
}
STORED_MAX = 4095  # 12 bits stored


@dataclass(frozen=True)
class MammoParams:
    """Difficulty and format settings of the mammography phantoms.

    Args:
        size: image ``(rows, cols)`` in pixels.
        pixel_spacing: detector pixel size in mm (PixelSpacing and ImagerPixelSpacing).
        class_mix: shares of ``(benign, malignant, normal)`` breasts (normalised); both views of
            a breast share its pathology.
        lesion_contrast: added density of a benign mass, relative to the fat-to-gland contrast
            (malignant masses get 1.3 times that); 0.3 is subtle, the default 0.8 is clear.
        lesion_size: ``(min, max)`` mass radius as a fraction of the image width.
        noise: quantum noise standard deviation, relative to the display range.
        density: ``(min, max)`` share of the breast occupied by fibroglandular tissue.
        monochrome1_rate: share of patients whose images are MONOCHROME1 (stored inverted).
        rescale_rate: share of patients whose images carry RescaleSlope / RescaleIntercept /
            RescaleType (identity values 1 / 0 / US, as the DX Image Module requires).
    """

    size: tuple[int, int] = (512, 320)
    pixel_spacing: float = 0.2
    class_mix: tuple[float, float, float] = (0.35, 0.35, 0.30)
    lesion_contrast: float = 0.8
    lesion_size: tuple[float, float] = (0.06, 0.12)
    noise: float = 0.015
    density: tuple[float, float] = (0.15, 0.55)
    monochrome1_rate: float = 0.5
    rescale_rate: float = 0.5

    def __post_init__(self) -> None:
        rows, cols = self.size
        if min(rows, cols) < 64:
            raise ValueError(f"size must be at least 64x64, got {self.size}")
        if self.pixel_spacing <= 0:
            raise ValueError(f"pixel_spacing must be positive, got {self.pixel_spacing}")
        check_mix(self.class_mix)
        if not 0.0 < self.lesion_contrast <= 2.0:
            raise ValueError(f"lesion_contrast must be in (0, 2], got {self.lesion_contrast}")
        lo, hi = self.lesion_size
        if not 0.01 <= lo <= hi <= 0.25:
            raise ValueError(f"lesion_size must satisfy 0.01 <= min <= max <= 0.25, got {self.lesion_size}")
        if not 0.0 <= self.noise <= 0.2:
            raise ValueError(f"noise must be in [0, 0.2], got {self.noise}")
        dlo, dhi = self.density
        if not 0.0 <= dlo <= dhi <= 1.0:
            raise ValueError(f"density must satisfy 0 <= min <= max <= 1, got {self.density}")
        for name in ("monochrome1_rate", "rescale_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


# ----------------------------------------------------------------------------------------------
# anatomy (drawn for a left breast: chest wall at column 0; right breasts are mirrored)


def _outline(rng: np.random.Generator, rows: int, cols: int, view: str) -> dict[str, Any]:
    """Breast mask, nipple position, ellipse parameters and (MLO) pectoral mask."""
    rr, cc = np.mgrid[0:rows, 0:cols].astype(np.float32)
    if view == "CC":
        c = rows * (0.5 + rng.normal(0.0, 0.02))
        b = rows * rng.uniform(0.36, 0.44)
    else:
        c = rows * rng.uniform(0.54, 0.60)
        b = rows * rng.uniform(0.36, 0.42)
    a = cols * rng.uniform(0.70, 0.86)
    theta = np.arctan2(rr - c, cc)
    wobble = 1.0 + np.interp(theta, np.linspace(-np.pi / 2, np.pi / 2, 64), smooth_curve(rng, 64, 0.03, 4))
    breast = (cc / a) ** 2 + ((rr - c) / b) ** 2 <= wobble**2
    pectoral = np.zeros_like(breast)
    if view == "MLO":
        axilla = cols * rng.uniform(0.30, 0.42)
        tail = (rr < c) & (cc < axilla + (a * 0.9 - axilla) * np.clip(rr / c, 0, 1) ** 2)
        breast = ndimage.gaussian_filter((breast | tail).astype(np.float32), 4.0) > 0.5
        top = cols * rng.uniform(0.25, 0.38)  # pectoral width at the top edge
        height = rows * rng.uniform(0.40, 0.60)  # where it meets the chest wall
        pectoral = (cc < top * np.clip(1.0 - rr / height, 0, 1) ** 0.85) & breast
    ys, xs = np.nonzero(breast)
    far = int(np.argmax(xs))
    return {
        "breast": breast,
        "pectoral": pectoral,
        "nipple": (float(ys[far]), float(xs[far])),
        "c": c,
        "b": b,
        "a": a,
    }


def _fibroglandular(
    rng: np.random.Generator, shape: tuple[int, int], anat: dict[str, Any], density: float
) -> np.ndarray:
    """Fibroglandular tissue weight in [0, 1]: radial streaks + blobs, denser centrally."""
    rows, cols = shape
    rr, cc = np.mgrid[0:rows, 0:cols].astype(np.float32)
    ny, nx = anat["nipple"]
    rho = np.hypot(rr - ny, cc - nx)
    phi = np.arctan2(rr - ny, cc - nx)  # points back towards the chest wall: |phi| near pi
    # noise on a polar grid, smooth along the radius: ducts and ligaments converge on the nipple
    n_rho, n_phi = 96, 256
    polar = ndimage.gaussian_filter(
        rng.standard_normal((n_rho, n_phi)).astype(np.float32), (5.0, 2.5), mode="wrap"
    )
    polar /= polar.std()
    ri = rho / (math.hypot(rows, cols) / n_rho)
    pj = (np.mod(phi, 2 * np.pi) / (2 * np.pi)) * n_phi
    streaks = ndimage.map_coordinates(polar, [ri, pj], order=1, mode="grid-wrap")
    scale = cols / 320.0
    blobs = smooth_noise(rng, shape, 7.0 * scale)
    fine = smooth_noise(rng, shape, 1.5 * scale)
    near = np.clip(rho / (0.4 * cols), 0.0, 1.0) ** 1.5  # streaks blur out in the retroareolar region
    field = 0.7 * streaks * near + 0.35 * blobs + 0.25 * fine
    # prior: glandular tissue sits behind the nipple, away from the skin, denser towards the chest
    depth = np.clip((nx - cc) / max(nx, 1.0), 0.0, 1.0)
    radial = ((cc / anat["a"]) ** 2 + ((rr - anat["c"]) / anat["b"]) ** 2) ** 0.5
    prior = 1.6 * depth - 1.8 * np.clip(radial - 0.55, 0, None) - 0.4 - 0.8 * np.exp(-rho / (0.08 * cols))
    score = field + prior
    inside = anat["breast"] & ~anat["pectoral"]
    if not inside.any():
        return np.zeros(shape, np.float32)
    threshold = np.quantile(score[inside], 1.0 - density) if density > 0 else np.inf
    return (soft_step(score - threshold, 0.45) * inside).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# lesions


def _lesion_design(rng: np.random.Generator, pathology: str, params: MammoParams) -> dict[str, Any]:
    """Shape of one breast's lesion, shared by its CC and MLO views."""
    radius = rng.uniform(*params.lesion_size) * params.size[1]
    if pathology == "benign":
        harmonics = [(rng.normal(0.0, 0.025), rng.uniform(0, 2 * np.pi)) for _ in range(4)]
        aspect = rng.uniform(1.0, 1.5)
        spicules: list[tuple[float, float, float]] = []
    else:
        harmonics = [(rng.normal(0.0, 0.07) / math.sqrt(k), rng.uniform(0, 2 * np.pi)) for k in range(1, 9)]
        aspect = rng.uniform(0.9, 1.3)
        spicules = [
            (rng.uniform(-np.pi, np.pi), rng.uniform(0.8, 2.2), rng.uniform(0.8, 1.6))
            for _ in range(int(rng.integers(8, 20)))
        ]
    return {
        "radius": radius,
        "aspect": aspect,
        "harmonics": harmonics,
        "spicules": spicules,  # (angle, length in radii, width in px)
        "depth": rng.uniform(0.3, 0.7),  # fraction of the nipple-to-chest-wall distance
        "offset": rng.uniform(-0.45, 0.45),  # fraction of the local half-height
        "calcifications": pathology == "malignant" and rng.random() < 0.35,
    }


def _place(
    anat: dict[str, Any], design: dict[str, Any], view: str, rng: np.random.Generator
) -> tuple[float, float]:
    """Lesion centre in one view: same distance from the nipple, view-dependent height."""
    _, nx = anat["nipple"]
    col = nx * (1.0 - design["depth"])
    half = anat["b"] * math.sqrt(max(0.0, 1.0 - (col / anat["a"]) ** 2))
    offset = design["offset"] if view == "CC" else 0.6 * design["offset"] + rng.normal(0.0, 0.1)
    return anat["c"] + offset * half, col


def _draw_lesion(
    rng: np.random.Generator,
    shape: tuple[int, int],
    anat: dict[str, Any],
    design: dict[str, Any],
    view: str,
    pathology: str,
    contrast: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Render a lesion in one view; returns (added density, mask of the mass body)."""
    rows, cols = shape
    allowed = ndimage.binary_erosion(anat["breast"], iterations=int(design["radius"] * 0.5) + 4)
    angle = rng.uniform(-np.pi, np.pi)
    mask = np.zeros(shape, bool)
    for attempt in range(12):
        cy, cx = _place(anat, design, view, rng)
        if attempt:  # pull towards the breast axis until the mass lies inside the breast
            cy = anat["c"] + (cy - anat["c"]) * 0.85**attempt
        mask = radial_lesion_mask(
            shape, (cy, cx), design["radius"], design["aspect"], angle, design["harmonics"]
        )
        if mask.any() and not (mask & ~allowed).any():
            break
    mask &= anat["breast"]
    # a mass is thickest (densest) in its centre
    dist = ndimage.distance_transform_edt(mask)
    body = np.clip(dist / max(design["radius"] * 0.35, 1.0), 0.0, 1.0) ** 0.5
    sharp = 0.8 if pathology == "benign" else 1.4
    density = ndimage.gaussian_filter(body.astype(np.float32), sharp)
    strength = contrast * (1.0 if pathology == "benign" else 1.3)
    added = strength * density
    if design["spicules"]:
        from skimage.draw import line_aa

        lines = np.zeros(shape, np.float32)
        for s_angle, length, width in design["spicules"]:
            a = s_angle + angle
            r0 = design["radius"] * 0.6
            r1 = design["radius"] * (1.0 + length)
            y0, x0 = cy - r0 * math.sin(a), cx + r0 * math.cos(a)
            y1, x1 = cy - r1 * math.sin(a), cx + r1 * math.cos(a)
            rr, cc, val = line_aa(int(y0), int(x0), int(y1), int(x1))
            keep = (rr >= 0) & (rr < rows) & (cc >= 0) & (cc < cols)
            taper = np.linspace(1.0, 0.2, len(rr))[keep]
            np.maximum.at(lines, (rr[keep], cc[keep]), val[keep] * taper * (width / 1.6))
        lines = ndimage.gaussian_filter(lines, 0.8) * anat["breast"]
        added = added + 1.3 * strength * lines
    if design["calcifications"]:
        ys, xs = np.nonzero(mask)
        pick = rng.choice(len(ys), size=min(len(ys), int(rng.integers(4, 12))), replace=False)
        dots = np.zeros(shape, np.float32)
        dots[ys[pick], xs[pick]] = 1.0
        added = added + 0.8 * ndimage.gaussian_filter(dots, 0.6) / 0.44
    return added.astype(np.float32), mask


# ----------------------------------------------------------------------------------------------
# one image


def render_mammo_view(
    rng: np.random.Generator,
    view: str,
    params: MammoParams,
    density: float,
    lesion: dict[str, Any] | None = None,
    pathology: str = "normal",
) -> tuple[np.ndarray, np.ndarray]:
    """Render one view of a left breast (mirror the result for a right breast).

    Args:
        rng: the image's generator.
        view: ``"CC"`` or ``"MLO"``.
        params: difficulty settings.
        density: fibroglandular share of this breast.
        lesion: the breast's lesion design (``None`` for a normal breast).
        pathology: ``"benign"``, ``"malignant"`` or ``"normal"``.

    Returns:
        ``(display, mask)``: display values in [0, 1] (bright = dense, MONOCHROME2 sense) and
        the boolean mass mask.
    """
    rows, cols = params.size
    shape = (rows, cols)
    anat = _outline(rng, rows, cols, view)
    breast, pectoral = anat["breast"], anat["pectoral"]
    dist = ndimage.distance_transform_edt(breast)
    thick = 1.0 - np.exp(-dist / (0.07 * cols))  # compressed thickness falls off towards the skin
    fgt = _fibroglandular(rng, shape, anat, density)
    ligaments = np.exp(-((smooth_noise(rng, shape, 9.0 * cols / 320) / 0.06) ** 2))  # Cooper's ligaments
    image = 0.24 + 0.20 * thick + 0.30 * fgt * thick + 0.025 * smooth_noise(rng, shape, 3.0)
    image += 0.05 * ligaments * thick * (1 - fgt)
    image += 0.10 * ((dist > 0) & (dist < 2.5))  # skin line
    muscle = ndimage.gaussian_filter(pectoral.astype(np.float32), 2.5)
    rr, cc = np.mgrid[0:rows, 0:cols]
    shade = 0.62 + 0.12 * np.exp(-(rr / rows + cc / cols) * 3.0)  # thicker, brighter at the top
    image = image * (1 - muscle) + (shade + 0.03 * smooth_noise(rng, shape, (8.0, 3.0))) * muscle
    mask = np.zeros(shape, bool)
    if lesion is not None:
        added, mask = _draw_lesion(rng, shape, anat, lesion, view, pathology, params.lesion_contrast * 0.30)
        image = image + added
    image = np.where(breast | (muscle > 0.01), image, 0.02)
    image = image + rng.normal(0.0, params.noise, shape) * np.sqrt(np.clip(image, 0.02, None))
    return np.clip(image, 0.0, 1.0).astype(np.float32), mask


# ----------------------------------------------------------------------------------------------
# DICOM


def _mg_dataset(
    stored: np.ndarray,
    *,
    seed: int,
    patient: int,
    laterality: str,
    view: str,
    photometric: str,
    rescale: bool,
    params: MammoParams,
    breast: np.ndarray,
) -> Any:
    """Build the DICOM MG dataset of one image (pixel data already in stored values)."""
    from sum_monai.phantoms.dicom import base_dataset, code_item

    pid = f"{patient + 1:04d}"
    image_id = f"PH{pid}_{laterality}_{view}"
    series_number = {"R": 1, "L": 3}[laterality] + (view == "MLO")
    ds = base_dataset(
        MG_SOP_CLASS,
        stable_uid(seed, MODALITY, patient, laterality, view, "sop"),
        modality="MG",
        patient_name=f"PHANTOM^P{pid}",
        patient_id=f"PH{pid}",
        study_uid=stable_uid(seed, MODALITY, patient, "study"),
        series_uid=stable_uid(seed, MODALITY, patient, laterality, view, "series"),
        series_number=series_number,
        instance_number=1,
        series_description=f"{laterality} {view}",
        study_description="PHANTOM MAMMOGRAPHY",
    )
    ds.ImageType = ["ORIGINAL", "PRIMARY", ""]
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.BodyPartExamined = "BREAST"
    ds.AnatomicRegionSequence = [code_item("76752008", "SCT", "Breast")]
    ds.ImageLaterality = laterality
    ds.ViewPosition = view
    ds.ViewCodeSequence = [code_item(*VIEW_CODES[view])]
    ds.PatientOrientation = ORIENTATION[(laterality, view)].split("\\")
    ds.PositionerType = "MAMMOGRAPHIC"
    ds.OrganExposed = "BREAST"
    ds.BreastImplantPresent = "NO"
    ds.PartialView = "NO"
    ds.DetectorType = "DIRECT"
    ds.KVP = 28
    ds.ImagerPixelSpacing = [params.pixel_spacing, params.pixel_spacing]
    ds.PixelSpacing = [params.pixel_spacing, params.pixel_spacing]
    ds.QualityControlImage = "NO"
    # keep our deterministic SOP Instance UID (pydicom would otherwise draw a random one)
    ds.set_pixel_data(stored, photometric, 12, generate_instance_uid=False)
    # DX Image Module: MONOCHROME2 pairs with IDENTITY, MONOCHROME1 with INVERSE; stored values
    # are log-proportional to exposure (denser = less X-ray intensity)
    ds.PresentationLUTShape = "IDENTITY" if photometric == "MONOCHROME2" else "INVERSE"
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = -1 if photometric == "MONOCHROME2" else 1
    if rescale:
        ds.RescaleIntercept = 0
        ds.RescaleSlope = 1
        ds.RescaleType = "US"
    lo, hi = np.percentile(stored[breast], [1.0, 99.5]) if breast.any() else (0, STORED_MAX)
    ds.WindowCenter = round((lo + hi) / 2.0)
    ds.WindowWidth = max(2, round((hi - lo) * 1.1))
    ds.WindowCenterWidthExplanation = "BREAST"
    ds.VOILUTFunction = "LINEAR"
    return ds, image_id


def write_mammo(
    root: Path, n: int, seed: int, params: MammoParams, progress: bool = True
) -> tuple[list[Path], list[dict[str, Any]]]:
    """Write ``n`` patients (2-4 images each) under ``root`` (which must exist).

    Returns:
        The written files and one manifest record per image (the rows of ``cases.csv``).
    """
    from tqdm import tqdm

    from sum_monai.io.writers import save_dicom, save_png
    from sum_monai.utils.atomic import atomic_write_text

    written: list[Path] = []
    records: list[dict[str, Any]] = []
    for patient in tqdm(range(n), desc="mammography phantoms", unit="patient", disable=not progress):
        rng = case_rng(seed, MODALITY, patient)
        u = rng.random()
        sides = ["R", "L"] if u < 0.5 or u >= 0.85 else [["R", "L"][int(rng.integers(2))]]
        views = {side: ["CC", "MLO"] for side in sides}
        if u >= 0.85:  # three images: one breast has a single view
            views[sides[int(rng.integers(2))]] = [["CC", "MLO"][int(rng.integers(2))]]
        photometric = (
            "MONOCHROME1"
            if low_discrepancy(seed, "mammo-mono1", patient) < params.monochrome1_rate
            else "MONOCHROME2"
        )
        rescale = bool(rng.random() < params.rescale_rate)
        for side in sides:
            b_rng = case_rng(seed, MODALITY, patient, f"breast-{side}")
            pathology = assign_class(
                low_discrepancy(seed, "mammo-class", 2 * patient + (side == "L")), params.class_mix
            )
            density = b_rng.uniform(*params.density)
            design = _lesion_design(b_rng, pathology, params) if pathology != "normal" else None
            for view in views[side]:
                v_rng = case_rng(seed, MODALITY, patient, f"{side}-{view}")
                display, mask = render_mammo_view(v_rng, view, params, density, design, pathology)
                if side == "R":  # mirror: chest wall at the image's right edge
                    display, mask = display[:, ::-1], mask[:, ::-1]
                values = np.round(40 + display * 4000).astype(np.uint16)
                stored = STORED_MAX - values if photometric == "MONOCHROME1" else values
                ds, image_id = _mg_dataset(
                    np.ascontiguousarray(stored),
                    seed=seed,
                    patient=patient,
                    laterality=side,
                    view=view,
                    photometric=photometric,
                    rescale=rescale,
                    params=params,
                    breast=display > 0.05,
                )
                image_path = save_dicom(root / "images" / f"{image_id}.dcm", ds)
                mask_path = save_png(
                    root / "masks" / f"{image_id}_mask.png", np.ascontiguousarray(mask, np.uint8) * 255
                )
                written += [image_path, mask_path]
                records.append(
                    {
                        "image": image_path.relative_to(root).as_posix(),
                        "mask": mask_path.relative_to(root).as_posix(),
                        "patient_id": f"PH{patient + 1:04d}",
                        "laterality": side,
                        "view": view,
                        "pathology": pathology,
                        "photometric": photometric,
                    }
                )
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    written.append(atomic_write_text(root / "cases.csv", buffer.getvalue()))
    return written, records
