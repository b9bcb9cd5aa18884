"""What one predicted case writes besides its mask: a DICOM SEG for DICOM inputs, and its spacing.

Segments of the DICOM SEG, one per predicted class (label value > 0), coded with SNOMED CT
concepts of DICOM CID 7150 / 7151:

==============  ===================================  ==============================================
class name      category                             type (modifier)
==============  ===================================  ==============================================
lesion          Morphologically Abnormal Structure   Lesion
tumour          Morphologically Abnormal Structure   Neoplasm (Tumor)
benign          Morphologically Abnormal Structure   Mass (modifier: Benign)
malignant       Morphologically Abnormal Structure   Mass (modifier: Malignant)
(other)         Morphologically Abnormal Structure   Lesion, labelled with the class name
==============  ===================================  ==============================================

Mammography (input modality ``MG``) gets a first segment "normal breast tissue" (Anatomical
Structure / Breast): the breast region of the presented image minus the predicted lesions (see
:mod:`sum_monai.predict.tissue`), so the SEG holds normal tissue, benign and malignant as three
segments. A DICOM series (MRI) is segmented on its channel-0 series (pre-contrast), which the SEG
references slice by slice; for a DCE study folder, on the pre-contrast series the bundle chose.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sum_monai.errors import DataError
from sum_monai.io.seg import Segment, frames_from_projection, frames_from_volume, write_dicom_seg
from sum_monai.predict.cases import Case

__all__ = ["dicom_spacing", "segment_for", "volume_spacing", "write_case_seg"]


def segment_for(class_name: str) -> Segment:
    """The coded meaning of a predicted class (see the module table)."""
    from pydicom.sr.codedict import codes

    sct = codes.SCT
    abnormal = sct.MorphologicallyAbnormalStructure
    name = class_name.lower()
    if name == "benign":
        return Segment("benign lesion", abnormal, sct.Mass, sct.Benign)
    if name == "malignant":
        return Segment("malignant lesion", abnormal, sct.Mass, sct.Malignant)
    if name in ("tumour", "tumor"):
        return Segment(class_name, abnormal, sct.Neoplasm)
    return Segment(class_name, abnormal, sct.Lesion)


def normal_tissue_segment() -> Segment:
    """The "normal breast tissue" segment of mammography SEGs."""
    from pydicom.sr.codedict import codes

    return Segment("normal breast tissue", codes.SCT.AnatomicalStructure, codes.SCT.Breast)


def dicom_spacing(path: Path) -> tuple[tuple[float, float] | None, str | None]:
    """Pixel size of a 2D DICOM in MONAI axis order ``(column spacing, row spacing)``, with its tag.

    Pixel Spacing (calibrated to the patient) is preferred; Imager Pixel Spacing (at the detector,
    without magnification correction) is the fallback, as in projection radiography.
    """
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        if value is not None and len(value) >= 2 and float(value[0]) > 0 and float(value[1]) > 0:
            return (float(value[1]), float(value[0])), keyword
    return None, None


def volume_spacing(affine: np.ndarray) -> tuple[tuple[float, ...], float]:
    """Voxel spacing (norms of the affine's columns) and voxel volume ``|det|`` in mm^3."""
    aff = np.asarray(affine, dtype=np.float64)
    spacing = tuple(float(np.linalg.norm(aff[:3, i])) for i in range(3))
    return spacing, float(abs(np.linalg.det(aff[:3, :3])))


def _series_datasets(folder: Path) -> list[Any]:
    """Headers of the DICOM files in a series folder (the one ITK read for channel 0)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    out = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        try:
            out.append(pydicom.dcmread(path, stop_before_pixels=True))
        except InvalidDicomError:
            continue  # e.g. a DICOMDIR-less folder with a README next to the slices
    if not out:
        raise DataError(folder, "no DICOM files to reference in the DICOM SEG")
    return out


def write_case_seg(
    path: Path,
    case: Case,
    label_map: np.ndarray,
    affine: np.ndarray,
    class_names: Sequence[str],
    modality: str,
    algorithm_name: str,
    algorithm_version: str,
    uid_entropy: Sequence[str],
) -> Path:
    """Write the DICOM SEG of a case whose input is DICOM.

    Args:
        path: the ``.dcm`` to write.
        case: the case (``case.dicom`` is the image file or the channel-0 series folder; for a
            study folder ``case.dicom_files`` are the chosen pre-contrast series' files).
        label_map: the prediction on the input grid (2D ``(W, H)`` or 3D ``(X, Y, Z)``).
        affine: the prediction's affine (3D series: voxel to RAS).
        class_names: name of each label value; values > 0 become segments.
        modality: the bundle's input modality (``MG`` adds the normal-tissue segment).
        algorithm_name / algorithm_version: the bundle and its version / weights.
        uid_entropy: strings the SEG's UIDs derive from.

    Raises:
        DataError: the prediction does not fit the source images.
    """
    import pydicom

    if case.dicom is None:
        raise ValueError(f"{case.name}: not a DICOM case")
    labels = np.asarray(label_map)
    if case.dicom.is_dir():
        if case.dicom_files:  # a DCE study folder: the pre-contrast series the bundle used
            sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in case.dicom_files]
        else:
            sources = _series_datasets(case.dicom)
        frames = frames_from_volume(labels, affine, sources, case.dicom)
    else:
        source = pydicom.dcmread(case.dicom)
        sources = [source]
        frames = frames_from_projection(labels, source, case.dicom)
    segments = [segment_for(name) for name in class_names[1:]]
    masks = [frames == value for value in range(1, len(class_names))]
    if modality.upper() == "MG" and not case.dicom.is_dir():
        from sum_monai.predict.tissue import breast_region, presented_image

        region = breast_region(presented_image(sources[0]))
        segments.insert(0, normal_tissue_segment())
        masks.insert(0, region[None] & (frames == 0))
    return write_dicom_seg(
        path,
        np.stack(masks, axis=-1),
        sources,
        segments,
        algorithm_name=algorithm_name,
        algorithm_version=algorithm_version,
        series_description=f"{algorithm_name} segmentation",
        uid_entropy=uid_entropy,
    )
