"""Breast DCE-MRI phantoms: pre-contrast and first post-contrast volumes with a tumour label.

Anatomy (axial slices, anterior at the top, patient right on the image left as displayed):
two breasts (half-ellipsoids anterior to the chest wall) of fat (bright on non-fat-suppressed
T1) and fibroglandular tissue (darker), skin, the pectoral muscle and chest wall, lungs (dark)
and the heart (enhancing blood pool), air around the body. A lobulated tumour sits in the
fibroglandular tissue of one breast: on the pre-contrast image it is about as dark as
fibroglandular tissue, on the first post-contrast image it is clearly bright (rim-enhancing);
fibroglandular tissue shows mild, patchy background parenchymal enhancement. Both time points
share a smooth coil bias field and get independent Rician noise. Spacing is anisotropic
(default 0.8 x 0.8 x 2.0 mm).

Layout written by :func:`write_mri` (``format`` ``"both"``)::

    DIR/imagesTr/breast_0001_0000.nii.gz   pre-contrast  (int16)
    DIR/imagesTr/breast_0001_0001.nii.gz   first post-contrast
    DIR/labelsTr/breast_0001.nii.gz        uint8, 0 background / 1 tumour
    DIR/dataset.json                       nnU-Net v2 / MSD style description
    DIR/dicom/breast_0001/pre/0001.dcm ... one MR Image Storage file per slice
    DIR/dicom/breast_0001/post1/0001.dcm ...

Geometry: voxel ``(i, j, k)`` of the NIfTI array is column ``i``, row ``j`` of DICOM slice ``k``;
i runs towards the patient's left, j towards posterior, k towards superior. DICOM positions are
LPS (``ImagePositionPatient = origin + k * dz``), the NIfTI affine is the same geometry in RAS
(x and y negated), so ITK reads both as the same image.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from sum_monai.phantoms.common import blob_mask_3d, case_rng, smooth_noise, soft_step, stable_uid

__all__ = [
    "KINETICS",
    "MR_SOP_CLASS",
    "MRIParams",
    "case_name",
    "mri_affine",
    "render_mri_case",
    "render_mri_phases",
    "write_mri",
]

MODALITY = "mri"
#: MR Image Storage.
MR_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.4"
CHANNELS = ("pre", "post1")
FORMATS = ("nifti", "dicom", "both")
LAYOUTS = ("msd", "study")
STORED_MAX = 4095  # 12 bits stored

# pre-contrast T1 (no fat suppression) signal of each tissue, and its post/pre enhancement ratio
FAT, FGT, MUSCLE, SKIN, LUNG, HEART = 900.0, 330.0, 380.0, 600.0, 40.0, 420.0


@dataclass(frozen=True)
class MRIParams:
    """Difficulty and format settings of the breast MRI phantoms.

    Args:
        size: volume ``(x, y, z)`` in voxels: x right -> left, y anterior -> posterior,
            z inferior -> superior.
        spacing: voxel size in mm along x, y, z (anisotropic like clinical DCE).
        lesion_contrast: tumour wash-in, as post / pre - 1 (the default 2.0 makes the tumour
            about 3 times brighter after contrast, brighter than fat; 0.5 is hard to tell from
            enhancing parenchyma). The rim enhances more than the core.
        bpe: background parenchymal enhancement of fibroglandular tissue, as post / pre - 1
            (mean; patchy).
        lesion_size: ``(min, max)`` tumour radius in mm.
        noise: Rician noise standard deviation relative to the fat signal.
        density: ``(min, max)`` share of the breast occupied by fibroglandular tissue.
        format: ``"nifti"``, ``"dicom"`` or ``"both"``: which image files to write. Labels
            (``labelsTr``, NIfTI) and ``dataset.json`` are always written; ``imagesTr`` with
            ``"nifti"`` / ``"both"``, ``dicom/`` with ``"dicom"`` / ``"both"``.
        layout: ``"msd"`` (the channel files above) or ``"study"``: one DICOM study folder per
            case as a scanner exports it (localiser, T2, the dynamic phases, a subtraction, a T1
            TSE post-contrast, a sagittal series, a DICOM SEG; see
            :mod:`sum_monai.phantoms.mri_study`). ``format`` is ignored for studies.
        phases: dynamic phase counts (pre-contrast + post-contrast phases) of the study layout,
            cycled over the cases: the default gives 5, 3, 2, 5, 3, 2 ... phases.
        dynamic_series: study layout: ``"separate"`` (one series per phase, ``ax dyn pre``,
            ``ax dyn 1st pass`` ...) or ``"single"`` (every phase in one series, told apart by
            TemporalPositionIdentifier, as some scanners store them).
    """

    size: tuple[int, int, int] = (128, 96, 40)
    spacing: tuple[float, float, float] = (0.8, 0.8, 2.0)
    lesion_contrast: float = 2.0
    bpe: float = 0.15
    lesion_size: tuple[float, float] = (4.0, 9.0)
    noise: float = 0.03
    density: tuple[float, float] = (0.15, 0.45)
    format: str = "both"
    layout: str = "msd"
    phases: tuple[int, ...] = (5, 3, 2)
    dynamic_series: str = "separate"

    def __post_init__(self) -> None:
        if len(self.size) != 3 or min(self.size) < 16:
            raise ValueError(f"size must be 3 values of at least 16 voxels, got {self.size}")
        if len(self.spacing) != 3 or min(self.spacing) <= 0:
            raise ValueError(f"spacing must be 3 positive values in mm, got {self.spacing}")
        if not 0.0 < self.lesion_contrast <= 5.0:
            raise ValueError(f"lesion_contrast must be in (0, 5], got {self.lesion_contrast}")
        if not 0.0 <= self.bpe <= 2.0:
            raise ValueError(f"bpe must be in [0, 2], got {self.bpe}")
        lo, hi = self.lesion_size
        if not 1.0 <= lo <= hi:
            raise ValueError(f"lesion_size must satisfy 1 <= min <= max (mm), got {self.lesion_size}")
        if not 0.0 <= self.noise <= 0.5:
            raise ValueError(f"noise must be in [0, 0.5], got {self.noise}")
        dlo, dhi = self.density
        if not 0.0 <= dlo <= dhi <= 1.0:
            raise ValueError(f"density must satisfy 0 <= min <= max <= 1, got {self.density}")
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {self.format!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if not self.phases or any(not isinstance(n, int) or not 2 <= n <= 12 for n in self.phases):
            raise ValueError(f"phases must be phase counts from 2 to 12, got {self.phases}")
        if self.dynamic_series not in ("separate", "single"):
            raise ValueError(f"dynamic_series must be 'separate' or 'single', got {self.dynamic_series!r}")


def case_name(index: int) -> str:
    """File stem of case ``index`` (0-based): ``breast_0001``, ``breast_0002``, ..."""
    return f"breast_{index + 1:04d}"


def _origin_lps(params: MRIParams) -> np.ndarray:
    """LPS position (mm) of voxel (0, 0, 0): the volume centred left-right and head-foot."""
    nx, ny, nz = params.size
    sx, sy, sz = params.spacing
    return np.round(np.array([-(nx - 1) * sx / 2.0, -ny * sy - 20.0, -(nz - 1) * sz / 2.0]), 4)


def mri_affine(params: MRIParams) -> np.ndarray:
    """The NIfTI (RAS+) affine of the phantom volumes: LPS geometry with x and y negated."""
    lps = np.diag([*params.spacing, 1.0])
    lps[:3, 3] = _origin_lps(params)
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


# ----------------------------------------------------------------------------------------------
# anatomy


def render_mri_case(rng: np.random.Generator, params: MRIParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one case.

    Args:
        rng: the case's generator.
        params: difficulty settings.

    Returns:
        ``(pre, post, label)``: float32 signal volumes ``(x, y, z)`` (noise included, >= 0) and
        the uint8 tumour label.
    """
    phases, label, _ = render_mri_phases(rng, params)
    return phases[0], phases[1], label


#: Enhancement of each tissue at ``t`` seconds after the first post-contrast phase, relative to
#: its enhancement then (1.0 at t = 0): the tumour washes out (type III curve: SER > 1.1 late),
#: parenchyma (BPE), muscle and skin keep enhancing, the blood pool falls.
KINETICS = {
    "tumour": lambda t: 1.0 - 0.30 * (1.0 - np.exp(-t / 240.0)),
    "fgt": lambda t: 1.0 + 1.00 * (1.0 - np.exp(-t / 240.0)),
    "muscle": lambda t: 1.0 + 0.30 * (1.0 - np.exp(-t / 240.0)),
    "skin": lambda t: 1.0 + 0.50 * (1.0 - np.exp(-t / 240.0)),
    "heart": lambda t: 1.0 - 0.50 * (1.0 - np.exp(-t / 120.0)),
}


def render_mri_phases(
    rng: np.random.Generator, params: MRIParams, post_times: tuple[float, ...] = (0.0,)
) -> tuple[list[np.ndarray], np.ndarray, dict[str, Any]]:
    """Render one case at several contrast phases.

    The first two volumes are exactly those of :func:`render_mri_case` for the same generator
    state (the later phases draw their noise afterwards). Tissue signal follows
    ``S_k = S_pre * (1 + E_tissue * KINETICS[tissue](t_k))`` before the shared coil bias, blur and
    noise, so ``S_k / S_pre - 1`` is the ground-truth enhancement ``truth["ratios"][k] - 1``.

    Args:
        rng: the case's generator.
        params: difficulty settings.
        post_times: seconds after the first post-contrast phase of each post-contrast phase
            (the first must be 0).

    Returns:
        ``(phases, label, truth)``: ``phases[0]`` pre-contrast then one float32 volume per post
        time; the uint8 tumour label; ``truth`` with ``ratios`` (noise-free ``S_k / S_pre`` per
        post phase), ``breast`` (bool mask of the breasts) and ``body`` (the thorax behind them).
    """
    if not post_times or post_times[0] != 0.0:
        raise ValueError(f"post_times must start with 0.0 (the first post-contrast phase), got {post_times}")
    nx, ny, nz = params.size
    sx, sy, sz = params.spacing
    gx, gy, gz = np.meshgrid(
        np.arange(nx, dtype=np.float32) * sx,
        np.arange(ny, dtype=np.float32) * sy,
        np.arange(nz, dtype=np.float32) * sz,
        indexing="ij",
    )
    width, depth, height = nx * sx, ny * sy, nz * sz
    xc, zc = width / 2.0 + rng.normal(0, 1.5), height / 2.0 + rng.normal(0, 2.0)
    vox_sigma = lambda mm: [mm / s for s in params.spacing]  # noqa: E731

    # chest wall: curves backwards towards the sides of the chest
    cw0 = depth * rng.uniform(0.52, 0.60)
    chest_wall = cw0 + 10.0 * ((gx - xc) / (width / 2.0)) ** 2
    body = gy > chest_wall
    # breasts: half-ellipsoids anterior to the chest wall, joined by presternal fat
    breasts = np.zeros(gx.shape, bool)
    radial = np.full(gx.shape, 9.0, np.float32)  # normalised ellipsoid radius (<1 inside a breast)
    offsets = rng.uniform(0.22, 0.27) * width
    cores = []
    for side in (-1, 1):
        bx = xc + side * offsets + rng.normal(0, 1.0)
        rx = width * rng.uniform(0.19, 0.23)
        ry = cw0 * rng.uniform(0.70, 0.85)
        rz = height * rng.uniform(0.34, 0.44)
        by = cw0 + 10.0 * ((bx - xc) / (width / 2.0)) ** 2
        taper = 1.0 - 0.3 * np.clip((by - gy) / ry, 0.0, 1.0)  # narrower towards the nipple
        r = np.sqrt(((gx - bx) / (rx * taper)) ** 2 + ((gy - by) / ry) ** 2 + ((gz - zc) / (rz * taper)) ** 2)
        breasts |= (r <= 1.0) & (gy <= chest_wall + 1.0)
        radial = np.minimum(radial, r)
        cores.append((bx, by, rx, ry, rz))
    presternal = (gy > chest_wall - 5.0) & (np.abs(gx - xc) < width * 0.25)
    breasts = ndimage.gaussian_filter((breasts | presternal).astype(np.float32), vox_sigma(2.0)) > 0.5
    breasts &= ~body
    inside = breasts | body
    skin_depth = ndimage.distance_transform_edt(inside, sampling=params.spacing)
    # tissue fractions (soft, for partial volume)
    muscle_band = soft_step(gy - chest_wall, 0.6)  # pectoralis, ribs and intercostal muscles
    thorax = soft_step(gy - chest_wall - rng.uniform(14, 18), 1.0)
    heart = soft_step(
        1.0 - np.sqrt(((gx - xc - 10) / 32) ** 2 + ((gy - depth) / 24) ** 2 + ((gz - zc) / 45) ** 2), 0.05
    )
    # fibroglandular tissue: smooth noise, denser in the breast core, thresholded to the density
    density = rng.uniform(*params.density)
    field = smooth_noise(rng, gx.shape, vox_sigma(2.5)) + 0.5 * smooth_noise(rng, gx.shape, vox_sigma(1.0))
    score = field - 3.0 * np.clip(radial - 0.55, 0, None) - 1.5 * (breasts & (radial > 1.0))
    in_breast = breasts & (skin_depth > 3.0)
    threshold = np.quantile(score[in_breast], 1.0 - density) if in_breast.any() else np.inf
    fgt = soft_step(score - threshold, 0.15) * in_breast

    # tumour: inside one breast's fibroglandular core
    bx, by, rx, ry, rz = cores[int(rng.integers(2))]
    radius = rng.uniform(*params.lesion_size)
    tumour = np.zeros(gx.shape, bool)
    for attempt in range(60):
        if attempt and attempt % 10 == 0:
            radius *= 0.8  # the breast is too small for this tumour: try a smaller one
        u = rng.normal(size=3)
        u *= rng.uniform(0.0, 0.5) / np.linalg.norm(u)
        center = (bx + u[0] * rx, by - abs(u[1]) * ry - 0.35 * ry, zc + u[2] * rz)
        ci = tuple(round(c / s) for c, s in zip(center, params.spacing, strict=True))
        if not all(0 <= c < n for c, n in zip(ci, params.size, strict=True)):
            continue
        if skin_depth[ci] > radius + 3.0 and not body[ci]:
            tumour = blob_mask_3d(rng, (gx, gy, gz), center, radius, int(rng.integers(1, 4)), params.spacing)
            tumour &= breasts & (skin_depth > 2.0)
            if tumour.any():
                break
    t_soft = ndimage.gaussian_filter(tumour.astype(np.float32), vox_sigma(0.6))

    # pre-contrast signal
    pre = np.where(inside, FAT, 0.0).astype(np.float32)
    pre = pre * (1 - fgt) + FGT * (1 + 0.08 * field) * fgt
    ribs = 1.0 - 0.25 * soft_step(np.sin(2 * np.pi * gz / rng.uniform(18, 24) + rng.uniform(0, 6)) - 0.3, 0.1)
    wall = MUSCLE * np.where(gy > chest_wall + rng.uniform(6, 9), ribs, 1.0)
    pre = pre * (1 - muscle_band * body) + wall * muscle_band * body
    chest = LUNG * (1 - heart) + HEART * heart
    pre = pre * (1 - thorax * body) + chest * thorax * body
    pre = np.where(inside & (skin_depth < 1.6), SKIN, pre)
    tumour_pre = FGT * (1.05 + 0.06 * smooth_noise(rng, gx.shape, vox_sigma(1.5)))
    pre = pre * (1 - t_soft) + tumour_pre * t_soft

    # post-contrast: enhancement ratios per tissue
    patchy = np.clip(1.0 + 0.8 * smooth_noise(rng, gx.shape, vox_sigma(4.0)), 0.0, None)
    ratio = np.ones(gx.shape, np.float32) + 0.02
    ratio += params.bpe * patchy * fgt
    ratio += 0.25 * muscle_band * body + 0.8 * heart * thorax * body + 0.10 * (inside & (skin_depth < 1.6))
    wash_in = np.zeros(gx.shape, np.float32)
    if tumour.any():
        depth_in = ndimage.distance_transform_edt(tumour, sampling=params.spacing)
        rim = np.exp(-depth_in / max(radius * 0.35, 1.0))  # rim enhancement, weaker core
        wash_in = (
            params.lesion_contrast
            * (0.75 + 0.4 * rim)
            * (1 + 0.1 * smooth_noise(rng, gx.shape, vox_sigma(1.5)))
        )
        ratio = ratio * (1 - t_soft) + (1.0 + wash_in) * t_soft
    ratios = [ratio]
    for t in post_times[1:]:  # later phases: every tissue's enhancement follows its curve
        k = {name: float(curve(t)) for name, curve in KINETICS.items()}
        later = np.ones(gx.shape, np.float32) + 0.02
        later += k["fgt"] * params.bpe * patchy * fgt
        later += k["muscle"] * 0.25 * muscle_band * body + k["heart"] * 0.8 * heart * thorax * body
        later += k["skin"] * 0.10 * (inside & (skin_depth < 1.6))
        ratios.append(later * (1 - t_soft) + (1.0 + k["tumour"] * wash_in) * t_soft)

    # smooth receive-coil bias (shared), blur to the acquisition's resolution, Rician noise
    bias = 1.0 + 0.08 * smooth_noise(rng, gx.shape, vox_sigma(25.0)) - 0.1 * (gy / depth - 0.5)
    psf = vox_sigma(0.5)
    sigma = params.noise * FAT
    out = []
    for vol in [pre] + [pre * r for r in ratios]:
        vol = ndimage.gaussian_filter(vol * bias, psf)
        re = vol + rng.normal(0.0, sigma, vol.shape)
        im = rng.normal(0.0, sigma, vol.shape)
        out.append(np.hypot(re, im).astype(np.float32))
    truth = {"ratios": ratios, "breast": breasts, "body": body}
    return out, tumour.astype(np.uint8), truth


# ----------------------------------------------------------------------------------------------
# DICOM series


def _mr_slices(
    volume: np.ndarray, *, seed: int, index: int, channel: str, params: MRIParams
) -> list[tuple[str, Any]]:
    """One MR Image Storage dataset per axial slice of ``volume`` (x, y, z); returns (name, ds)."""
    from sum_monai.phantoms.dicom import base_dataset

    origin = _origin_lps(params)
    sx, sy, sz = params.spacing
    series_number = CHANNELS.index(channel) + 1
    post = channel != "pre"
    window_hi = float(np.percentile(volume, 99.5))
    out = []
    for k in range(volume.shape[2]):
        ds = base_dataset(
            MR_SOP_CLASS,
            stable_uid(seed, MODALITY, index, channel, k, "sop"),
            modality="MR",
            patient_name=f"PHANTOM^MR{index + 1:04d}",
            patient_id=f"PHMR{index + 1:04d}",
            study_uid=stable_uid(seed, MODALITY, index, "study"),
            series_uid=stable_uid(seed, MODALITY, index, channel, "series"),
            series_number=series_number,
            instance_number=k + 1,
            series_description=f"T1 3D GRE {'post-contrast 1' if post else 'pre-contrast'}",
            study_description="PHANTOM BREAST DCE-MRI",
        )
        if post:
            ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = "090130"
            ds.ContrastBolusAgent = "gadolinium (simulated)"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.FrameOfReferenceUID = stable_uid(seed, MODALITY, index, "frame-of-reference")
        ds.PositionReferenceIndicator = ""
        ds.BodyPartExamined = "BREAST"
        ds.PatientPosition = "HFP"
        ds.ScanningSequence = "GR"
        ds.SequenceVariant = "SP"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "3D"
        ds.SequenceName = "fl3d"
        ds.AngioFlag = "N"
        ds.RepetitionTime = 4.5
        ds.EchoTime = 1.8
        ds.EchoTrainLength = 1
        ds.FlipAngle = 10
        ds.MagneticFieldStrength = 1.5
        ds.ImagingFrequency = 63.87
        ds.ImagedNucleus = "1H"
        ds.NumberOfTemporalPositions = len(CHANNELS)
        ds.TemporalPositionIdentifier = series_number
        ds.AcquisitionNumber = series_number
        ds.SliceThickness = sz
        ds.SpacingBetweenSlices = sz
        ds.PixelSpacing = [sy, sx]  # row spacing (along y), column spacing (along x)
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        position = [float(origin[0]), float(origin[1]), round(float(origin[2]) + k * sz, 4)]
        ds.ImagePositionPatient = position
        ds.SliceLocation = position[2]
        pixels = np.ascontiguousarray(volume[:, :, k].T)  # rows along y, columns along x
        ds.set_pixel_data(pixels, "MONOCHROME2", 12, generate_instance_uid=False)  # keep our UID
        ds.WindowCenter = round(window_hi / 2.0)
        ds.WindowWidth = max(2, round(window_hi))
        out.append((f"{k + 1:04d}.dcm", ds))
    return out


def _dataset_json(n: int) -> str:
    """nnU-Net v2 / MSD style ``dataset.json`` for ``n`` training cases."""
    description = {
        "name": "sum_monai breast DCE-MRI phantom",
        "description": "Synthetic 2-channel DCE breast MRI (pre-contrast, first post-contrast) with tumour labels",
        "reference": "sum_monai.phantoms.mri (synthetic; no patient data)",
        "licence": "CC0-1.0",
        "tensorImageSize": "3D",
        "channel_names": {"0": CHANNELS[0], "1": CHANNELS[1]},
        "labels": {"background": 0, "tumour": 1},
        "numTraining": n,
        "file_ending": ".nii.gz",
    }
    return json.dumps(description, indent=2) + "\n"


def write_mri(
    root: Path, n: int, seed: int, params: MRIParams, progress: bool = True
) -> tuple[list[Path], list[dict[str, Any]]]:
    """Write ``n`` DCE-MRI cases under ``root`` (which must exist) in ``params.format``.

    Returns:
        The written files and one manifest record per case.
    """
    from tqdm import tqdm

    from sum_monai.io.writers import save_dicom, save_nifti
    from sum_monai.utils.atomic import atomic_write_text

    if params.layout == "study":
        from sum_monai.phantoms.mri_study import write_mri_studies

        return write_mri_studies(root, n, seed, params, progress=progress)
    affine = mri_affine(params)
    nifti = params.format in ("nifti", "both")
    dicom = params.format in ("dicom", "both")
    written: list[Path] = []
    records: list[dict[str, Any]] = []
    for index in tqdm(range(n), desc="MRI phantoms", unit="case", disable=not progress):
        case = case_name(index)
        pre, post, label = render_mri_case(case_rng(seed, MODALITY, index), params)
        volumes = {
            ch: np.clip(np.round(v), 0, STORED_MAX).astype(np.uint16)
            for ch, v in zip(CHANNELS, (pre, post), strict=True)
        }
        record: dict[str, Any] = {
            "case": case,
            "label": f"labelsTr/{case}.nii.gz",
            "tumour_voxels": int(label.sum()),
        }
        written.append(save_nifti(root / "labelsTr" / f"{case}.nii.gz", label, affine))
        if nifti:
            images = []
            for c, ch in enumerate(CHANNELS):
                path = save_nifti(
                    root / "imagesTr" / f"{case}_{c:04d}.nii.gz", volumes[ch].astype(np.int16), affine
                )
                written.append(path)
                images.append(path.relative_to(root).as_posix())
            record["images"] = images
        if dicom:
            series = {}
            for ch in CHANNELS:
                folder = root / "dicom" / case / ch
                for name, ds in _mr_slices(volumes[ch], seed=seed, index=index, channel=ch, params=params):
                    written.append(save_dicom(folder / name, ds))
                series[ch] = folder.relative_to(root).as_posix()
            record["dicom"] = series
        records.append(record)
    written.append(atomic_write_text(root / "dataset.json", _dataset_json(n)))
    return written, records


def tumour_center_slice(label: np.ndarray) -> int:
    """Axial slice index through the tumour's centre of mass (the middle slice if no tumour)."""
    if not label.any():
        return label.shape[2] // 2
    return round(ndimage.center_of_mass(label)[2])
