"""Breast DCE-MRI phantoms as scanners export them: one DICOM study folder per case.

Layout written by :func:`write_mri_studies` (``MRIParams(layout="study")``)::

    DIR/dicom/breast_0001/01-3-plane_loc/0001.dcm ...        localiser: 3 slices, 3 planes
    DIR/dicom/breast_0001/02-ax_t2_stir/...                  axial T2, half the matrix
    DIR/dicom/breast_0001/03-ax_dyn_pre/...                  dynamic phase 0 (pre-contrast)
    DIR/dicom/breast_0001/04-ax_dyn_1st_pass/...             dynamic phase 1 (first post-contrast)
    ...                                                      ... up to the case's phase count
    DIR/dicom/breast_0001/NN-ax_dyn_sub_1st_pass/...         derived subtraction (ImageType DERIVED)
    DIR/dicom/breast_0001/NN-ax_t1_tse_post/...              axial T1 TSE post-contrast, other matrix
    DIR/dicom/breast_0001/NN-sag_t1_post/...                 sagittal post-contrast
    DIR/dicom/breast_0001/NN-breast_tissue_seg/seg.dcm       DICOM SEG of the breasts (on the pre series)
    DIR/labelsTr/breast_0001.nii.gz                          tumour label on the dynamic grid
    DIR/dataset.json                                         msd description (channels pre, post1)

so ``DIR`` is also a ``sum-monai datalist msd`` folder whose ``dicom/<case>/`` are study folders,
and ``DIR/dicom/<case>`` is what ``sum-monai predict --input`` takes. With
``dynamic_series="single"`` the dynamic phases are one series ``NN-ax_dyn_vibrant`` told apart by
TemporalPositionIdentifier (and their times).

Tags as a 1.5 T breast protocol writes them: the pre-contrast phase at 09:04:30, ContrastBolusStartTime
09:06:00 on the post-contrast phases, which follow at 09:06:30 + 90 s x k (AcquisitionTime,
ContentTime, TriggerTime in ms after the first phase), ContrastBolusAgent on post-contrast
images only, SeriesNumber in acquisition order, descriptions such as ``ax dyn 2nd pass``.
The pre-contrast and first post-contrast volumes of case ``i`` are exactly those of the ``msd``
layout with the same seed (:func:`sum_monai.phantoms.mri.render_mri_case`); later phases follow
:data:`sum_monai.phantoms.mri.KINETICS` (the tumour washes out).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sum_monai.phantoms.common import case_rng, stable_uid
from sum_monai.phantoms.mri import (
    MODALITY,
    MR_SOP_CLASS,
    STORED_MAX,
    MRIParams,
    _dataset_json,
    _origin_lps,
    case_name,
    mri_affine,
    render_mri_phases,
)

__all__ = ["PHASE_INTERVAL_S", "pass_name", "phase_times", "write_mri_studies"]

#: Seconds between post-contrast phases.
PHASE_INTERVAL_S = 90.0
PRE_TIME_S = 9 * 3600 + 4 * 60 + 30  # 09:04:30
BOLUS_TIME_S = 9 * 3600 + 6 * 60  # 09:06:00
FIRST_POST_S = BOLUS_TIME_S + 30.0


def _tm(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600:02d}{(s // 60) % 60:02d}{s % 60:02d}"


def pass_name(k: int) -> str:
    """``1st pass``, ``2nd pass`` ... as scanners describe post-contrast phase ``k`` (1-based)."""
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(k if k < 20 else k % 10, "th")
    return f"{k}{suffix} pass"


def phase_times(n_phases: int) -> list[float]:
    """AcquisitionTime (s after midnight) of each dynamic phase: pre, then one per post phase."""
    return [PRE_TIME_S] + [FIRST_POST_S + PHASE_INTERVAL_S * k for k in range(n_phases - 1)]


class _Series:
    """Common tags of one written series (study, patient, equipment, MR acquisition)."""

    def __init__(self, seed: int, index: int, key: str, number: int, description: str) -> None:
        self.seed, self.index, self.key, self.number, self.description = seed, index, key, number, description

    def dataset(self, k: int, instance: int | None = None) -> Any:
        from sum_monai.phantoms.dicom import base_dataset

        ds = base_dataset(
            MR_SOP_CLASS,
            stable_uid(self.seed, MODALITY, "study-layout", self.index, self.key, k, "sop"),
            modality="MR",
            patient_name=f"PHANTOM^MR{self.index + 1:04d}",
            patient_id=f"PHMR{self.index + 1:04d}",
            study_uid=stable_uid(self.seed, MODALITY, "study-layout", self.index, "study"),
            series_uid=stable_uid(self.seed, MODALITY, "study-layout", self.index, self.key, "series"),
            series_number=self.number,
            instance_number=instance if instance is not None else k + 1,
            series_description=self.description,
            study_description="PHANTOM BREAST DCE-MRI",
        )
        ds.FrameOfReferenceUID = stable_uid(self.seed, MODALITY, "study-layout", self.index, "frame-of-reference")
        ds.PositionReferenceIndicator = ""
        ds.BodyPartExamined = "BREAST"
        ds.PatientPosition = "HFP"
        ds.MagneticFieldStrength = 1.5
        ds.ImagingFrequency = 63.87
        ds.ImagedNucleus = "1H"
        return ds


def _slices(
    series: _Series,
    volume: np.ndarray,
    origin: np.ndarray,
    axes: tuple[np.ndarray, np.ndarray, np.ndarray],
    spacing: tuple[float, float, float],
    *,
    time_s: float,
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "M", "ND"),
    contrast: bool = False,
    sequence: tuple[str, str, float, float, int] = ("GR", "fl3d", 4.5, 1.8, 10),
    temporal: tuple[int, int, float] | None = None,
    instance_offset: int = 0,
) -> list[tuple[str, Any]]:
    """MR datasets of a volume ``(cols, rows, slices)`` on the grid ``origin + i*ax0*s0 + ...`` (LPS)."""
    row_dir, col_dir, normal = axes
    window = float(np.percentile(volume, 99.5)) or 1.0
    out = []
    for k in range(volume.shape[2]):
        ds = series.dataset(k + instance_offset, instance=k + 1 + instance_offset)
        ds.ImageType = list(image_type)
        ds.SeriesTime = _tm(time_s if temporal is None else PRE_TIME_S)
        ds.AcquisitionTime = ds.ContentTime = _tm(time_s)
        if contrast:
            ds.ContrastBolusAgent = "gadobutrol (simulated)"
            ds.ContrastBolusVolume = 7.5
            ds.ContrastBolusStartTime = _tm(BOLUS_TIME_S)
        scanning, name, tr, te, flip = sequence
        ds.ScanningSequence = scanning
        ds.SequenceVariant = "SP"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "3D" if scanning == "GR" else "2D"
        ds.SequenceName = name
        ds.AngioFlag = "N"
        ds.RepetitionTime = tr
        ds.EchoTime = te
        ds.EchoTrainLength = 1
        ds.FlipAngle = flip
        if temporal is not None:
            position, count, trigger_ms = temporal
            ds.TemporalPositionIdentifier = position
            ds.NumberOfTemporalPositions = count
            ds.TriggerTime = trigger_ms
        ds.SliceThickness = spacing[2]
        ds.SpacingBetweenSlices = spacing[2]
        ds.PixelSpacing = [spacing[1], spacing[0]]  # row spacing, column spacing
        ds.ImageOrientationPatient = [float(v) for v in (*row_dir, *col_dir)]
        position = origin + normal * spacing[2] * k
        ds.ImagePositionPatient = [round(float(v), 4) for v in position]
        ds.SliceLocation = round(float(np.dot(position, normal)), 4)
        pixels = np.ascontiguousarray(np.clip(np.round(volume[:, :, k].T), 0, STORED_MAX).astype(np.uint16))
        ds.set_pixel_data(pixels, "MONOCHROME2", 12, generate_instance_uid=False)
        ds.WindowCenter = round(window / 2.0)
        ds.WindowWidth = max(2, round(window))
        out.append((f"{k + 1 + instance_offset:04d}.dcm", ds))
    return out


def _seg(pre_slices: list[Any], breast: np.ndarray, series: _Series) -> Any:
    """A DICOM SEG (BINARY, segment ``breast``) of the breasts on the pre-contrast slices."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from sum_monai.phantoms.dicom import STUDY_DATE, STUDY_TIME

    frames = np.stack([breast[:, :, k].T for k in range(breast.shape[2])])[..., None]
    algorithm = hd.AlgorithmIdentificationSequence(
        name="sum_monai phantom", version="1", family=codes.cid7162.ArtificialIntelligence
    )
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="breast",
        segmented_property_category=codes.SCT.AnatomicalStructure,
        segmented_property_type=codes.SCT.Breast,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
        algorithm_identification=algorithm,
    )
    seg = hd.seg.Segmentation(
        source_images=pre_slices,
        pixel_array=frames.astype(bool),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=stable_uid(series.seed, MODALITY, "study-layout", series.index, "seg", "series"),
        series_number=series.number,
        sop_instance_uid=stable_uid(series.seed, MODALITY, "study-layout", series.index, "seg", "sop"),
        instance_number=1,
        manufacturer="sum_monai",
        manufacturer_model_name="synthetic phantom",
        software_versions="phantom",
        device_serial_number="none",
        series_description=series.description,
        omit_empty_frames=False,
    )
    for keyword in ("ContentDate", "SeriesDate", "StudyDate"):
        setattr(seg, keyword, STUDY_DATE)
    for keyword in ("ContentTime", "SeriesTime", "StudyTime"):
        setattr(seg, keyword, STUDY_TIME)
    return seg


def write_mri_studies(
    root: Path, n: int, seed: int, params: MRIParams, progress: bool = True
) -> tuple[list[Path], list[dict[str, Any]]]:
    """Write ``n`` DCE-MRI study folders under ``root/dicom`` (see the module docstring).

    Returns:
        The written files and one manifest record per case (phase count, series of each phase,
        the true mean tumour enhancement of each post-contrast phase).
    """
    from tqdm import tqdm

    from sum_monai.io.writers import save_dicom, save_nifti
    from sum_monai.utils.atomic import atomic_write_text

    affine = mri_affine(params)
    origin = _origin_lps(params).astype(np.float64)
    sx, sy, sz = params.spacing
    axial = (np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), np.array([0, 0, 1.0]))
    written: list[Path] = []
    records: list[dict[str, Any]] = []
    for index in tqdm(range(n), desc="MRI studies", unit="case", disable=not progress):
        case = case_name(index)
        n_phases = params.phases[index % len(params.phases)]
        times = phase_times(n_phases)
        post_times = tuple(float(t - times[1]) for t in times[1:])
        phases, label, truth = render_mri_phases(case_rng(seed, MODALITY, index), params, post_times)
        study = root / "dicom" / case
        number = 0
        files: list[tuple[Path, Any]] = []
        series_of: dict[str, str] = {}

        def folder(description: str, index: int = index, study: Path = study) -> tuple[_Series, Path]:
            nonlocal number
            number += 1
            name = f"{number:02d}-{description.replace(' ', '_').replace('/', '_')}"
            return _Series(seed, index, name, number, description), study / name

        pre = phases[0]
        # 1: three-plane localiser (one slice per plane, mixed orientations)
        s, f = folder("3-plane loc")
        nx, ny, nz = pre.shape
        centre = origin + np.array([sx * (nx - 1) / 2, sy * (ny - 1) / 2, sz * (nz - 1) / 2])
        loc = []
        sag_axes = (np.array([0, 1.0, 0]), np.array([0, 0, -1.0]), np.array([1.0, 0, 0]))
        cor_axes = (np.array([1.0, 0, 0]), np.array([0, 0, -1.0]), np.array([0, 1.0, 0]))
        top = origin[2] + sz * (nz - 1)
        planes = (
            (pre[:, :, nz // 2 : nz // 2 + 1], np.array([origin[0], origin[1], centre[2]]), axial, (sx, sy, 5.0)),
            (pre[nx // 2, :, ::-1][:, :, None], np.array([centre[0], origin[1], top]), sag_axes, (sy, sz, 5.0)),
            (pre[:, ny // 2, ::-1][:, :, None], np.array([origin[0], centre[1], top]), cor_axes, (sx, sz, 5.0)),
        )
        for k, (vol, org, axes, spc) in enumerate(planes):
            loc += _slices(s, vol, org, axes, spc, time_s=PRE_TIME_S - 300, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
                           sequence=("GR", "fl2d", 8.6, 4.0, 20), instance_offset=k)  # fmt: skip
        files += [(f / name, ds) for name, ds in loc]
        # 2: axial T2 (fat-suppressed look: fat dark), half the matrix
        s, f = folder("ax t2 stir")
        t2 = np.where(pre > 600, pre * 0.2, pre * 1.6)[::2, ::2, :]
        files += [(f / name, ds) for name, ds in _slices(s, t2, origin, axial, (2 * sx, 2 * sy, sz),
                  time_s=PRE_TIME_S - 240, sequence=("SE", "tse2d", 5000.0, 70.0, 90))]  # fmt: skip
        # the dynamic phases
        pre_datasets: list[Any] = []
        if params.dynamic_series == "separate":
            for p, volume in enumerate(phases):
                description = "ax dyn pre" if p == 0 else f"ax dyn {pass_name(p)}"
                s, f = folder(description)
                slices = _slices(s, volume, origin, axial, (sx, sy, sz), time_s=times[p], contrast=p > 0,
                                 temporal=(p + 1, n_phases, round((times[p] - times[0]) * 1000.0, 1)))  # fmt: skip
                if p == 0:
                    pre_datasets = [ds for _, ds in slices]
                series_of["pre" if p == 0 else f"post{p}"] = f.relative_to(root).as_posix()
                files += [(f / name, ds) for name, ds in slices]
        else:
            s, f = folder("ax dyn vibrant")
            for p, volume in enumerate(phases):
                slices = _slices(s, volume, origin, axial, (sx, sy, sz), time_s=times[p], contrast=p > 0,
                                 temporal=(p + 1, n_phases, round((times[p] - times[0]) * 1000.0, 1)),
                                 instance_offset=p * nz)  # fmt: skip
                if p == 0:
                    pre_datasets = [ds for _, ds in slices]
                files += [(f / name, ds) for name, ds in slices]
                series_of["pre" if p == 0 else f"post{p}"] = f"{f.relative_to(root).as_posix()}#{p + 1}"
        # derived subtraction of the first pass (same geometry as the dynamic phases)
        s, f = folder(f"ax dyn sub {pass_name(1)}")
        sub = np.clip(phases[1] - phases[0], 0, None)
        files += [(f / name, ds) for name, ds in _slices(s, sub, origin, axial, (sx, sy, sz), time_s=times[1],
                  image_type=("DERIVED", "SECONDARY", "SUBTRACTION"), contrast=True)]  # fmt: skip
        # axial T1 TSE post-contrast (other matrix, half the slices), acquired after the dynamic
        s, f = folder("ax t1 tse post")
        late = times[-1] + 120.0
        files += [(f / name, ds) for name, ds in _slices(s, phases[-1][::2, ::2, ::2], origin, axial,
                  (2 * sx, 2 * sy, 2 * sz), time_s=late, contrast=True, sequence=("SE", "tse2d", 600.0, 12.0, 90))]  # fmt: skip
        # sagittal post-contrast: every 4th column as a sagittal slice
        s, f = folder("sag t1 post")
        sag = phases[-1][::4, :, ::-1].transpose(1, 2, 0)  # (y, z from the top, x)
        files += [(f / name, ds) for name, ds in _slices(s, sag, np.array([origin[0], origin[1], top]), sag_axes,
                  (sy, sz, 4 * sx), time_s=late + 180.0, contrast=True)]  # fmt: skip
        # DICOM SEG of the breasts, referencing the pre-contrast slices
        s, f = folder("breast tissue seg")
        seg = _seg(pre_datasets, truth["breast"].astype(bool), s)
        for path, ds in files:
            written.append(save_dicom(path, ds))
        written.append(save_dicom(f / "seg.dcm", seg))
        written.append(save_nifti(root / "labelsTr" / f"{case}.nii.gz", label, affine))
        tumour = label > 0
        records.append(
            {
                "case": case,
                "label": f"labelsTr/{case}.nii.gz",
                "study": study.relative_to(root).as_posix(),
                "phases": n_phases,
                "dynamic_series": params.dynamic_series,
                "series": series_of,
                "tumour_voxels": int(tumour.sum()),
                "tumour_mean_enhancement_percent": [
                    round(float(100.0 * (r[tumour] - 1.0).mean()), 3) if tumour.any() else None
                    for r in truth["ratios"]
                ],
            }
        )
    written.append(atomic_write_text(root / "dataset.json", _dataset_json(n)))
    return written, records
