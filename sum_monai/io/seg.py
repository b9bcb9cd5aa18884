"""DICOM SEG objects for predicted masks, written with highdicom, aligned with their source images.

A segmentation of a DICOM input is stored as a DICOM Segmentation (BINARY, one segment per class)
that references the source SOP instances frame by frame, shares their Frame of Reference and
takes plane positions and pixel measures from them (highdicom derives those from the sources).

Two ways of putting a MONAI label map onto the source frames:

- :func:`frames_from_projection`: one 2D image (e.g. mammography) read as ``(W, H)`` (MONAI's
  2D axis order, first axis along the image columns): the frame is the transpose, ``(rows, cols)``;
- :func:`frames_from_volume`: a volume read from a DICOM series (``(X, Y, Z)`` with its RAS
  affine, as MONAI's ITKReader gives it): each source slice is located in the volume through its
  Image Position / Orientation (Patient), so the frames follow the sources whatever order the
  files come in.

:func:`write_dicom_seg` then writes the object atomically. SOP Instance and Series UIDs are
derived from ``uid_entropy`` (e.g. source UIDs + model identity), so predicting the same input
with the same weights gives the same UIDs.

Reading back: any DICOM toolkit. With pydicom: ``ds.pixel_array`` is ``(frames, rows, cols)``;
frame ``f`` belongs to segment
``ds.PerFrameFunctionalGroupsSequence[f].SegmentIdentificationSequence[0].ReferencedSegmentNumber``
and to the source instance ``...[f].DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID``.
(highdicom 0.28's own ``segread`` refuses SEGs of projection images, whose Pixel Measures carry no
Slice Thickness; pydicom reads them.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sum_monai.errors import DataError
from sum_monai.io.writers import save_dicom

if TYPE_CHECKING:
    from pydicom.dataset import Dataset
    from pydicom.sr.coding import Code

__all__ = ["Segment", "frames_from_projection", "frames_from_volume", "write_dicom_seg"]

#: Tolerance (in voxels) for a source slice to sit on the volume's grid.
GRID_TOLERANCE = 1e-2


@dataclass(frozen=True)
class Segment:
    """What one segment means (DICOM coded concepts, CID 7150 / 7151).

    Args:
        label: Segment Label shown by viewers, e.g. ``"malignant lesion"``.
        category: Segmented Property Category, e.g. ``codes.SCT.MorphologicallyAbnormalStructure``.
        type: Segmented Property Type, e.g. ``codes.SCT.Mass``.
        modifier: optional Segmented Property Type Modifier, e.g. ``codes.SCT.Malignant``.
    """

    label: str
    category: Code
    type: Code
    modifier: Code | None = None


def frames_from_projection(label_map: np.ndarray, source: Dataset, path: str | Path) -> np.ndarray:
    """The ``(1, rows, cols)`` frame of a 2D label map read in MONAI's ``(W, H)`` order.

    Raises:
        DataError: the label map does not have the source image's size.
    """
    arr = np.asarray(label_map)
    if arr.ndim != 2 or arr.shape != (int(source.Columns), int(source.Rows)):
        raise DataError(
            path,
            f"prediction of shape {arr.shape} does not match the DICOM image "
            f"({source.Columns} columns x {source.Rows} rows)",
        )
    return arr.T[None]


def _lps_to_ras(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, dtype=np.float64) * np.array([-1.0, -1.0, 1.0])


def frames_from_volume(
    volume: np.ndarray, affine: np.ndarray, sources: Sequence[Dataset], path: str | Path
) -> np.ndarray:
    """Frames ``(len(sources), rows, cols)`` of a ``(X, Y, Z)`` volume, one per source slice.

    Each source slice is found in the volume from its Image Position (Patient); its rows and
    columns must run along the volume's first two axes (as ITK reads a series), which is checked.

    Args:
        volume: label map on the series' voxel grid, MONAI / ITK axis order ``(X, Y, Z)``.
        affine: the volume's 4x4 voxel-to-RAS matrix.
        sources: the series' datasets (any order).
        path: the input, named in errors.

    Raises:
        DataError: a slice lies off the grid or is oriented differently from the volume.
    """
    vol = np.asarray(volume)
    aff = np.asarray(affine, dtype=np.float64)
    inv = np.linalg.inv(aff)
    axis_x = aff[:3, 0] / np.linalg.norm(aff[:3, 0])
    axis_y = aff[:3, 1] / np.linalg.norm(aff[:3, 1])
    frames = []
    for ds in sources:
        iop = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
        if not (
            np.allclose(_lps_to_ras(iop[:3]), axis_x, atol=1e-3)
            and np.allclose(_lps_to_ras(iop[3:]), axis_y, atol=1e-3)
        ):
            raise DataError(
                path, f"slice {ds.SOPInstanceUID} is not oriented like the volume read from the series"
            )
        ijk = (inv @ np.append(_lps_to_ras(np.asarray(ds.ImagePositionPatient, dtype=np.float64)), 1.0))[:3]
        k = round(float(ijk[2]))
        if (
            np.abs(ijk[:2]).max() > GRID_TOLERANCE
            or abs(ijk[2] - k) > GRID_TOLERANCE
            or not 0 <= k < vol.shape[2]
        ):
            raise DataError(
                path, f"slice {ds.SOPInstanceUID} does not lie on the volume's voxel grid (index {ijk})"
            )
        if (int(ds.Columns), int(ds.Rows)) != vol.shape[:2]:
            raise DataError(
                path, f"slice {ds.SOPInstanceUID} is {ds.Columns}x{ds.Rows}, the volume {vol.shape[:2]}"
            )
        frames.append(vol[:, :, k].T)
    return np.stack(frames)


def write_dicom_seg(
    path: str | Path,
    masks: np.ndarray,
    sources: Sequence[Dataset],
    segments: Sequence[Segment],
    *,
    algorithm_name: str,
    algorithm_version: str,
    series_description: str = "AI segmentation",
    uid_entropy: Sequence[str] = (),
    series_number: int = 900,
) -> Path:
    """Write a BINARY DICOM Segmentation of ``sources`` (highdicom) atomically.

    Args:
        path: the ``.dcm`` file.
        masks: ``(frames, rows, cols, segments)`` booleans; frame ``f`` belongs to
            ``sources[f]``, channel ``s`` to ``segments[s]`` (segment number ``s + 1``).
        sources: the source images, one per frame, all of one series.
        segments: meaning of each segment.
        algorithm_name: name in the Algorithm Identification (e.g. the bundle name).
        algorithm_version: its version (bundle version and weights).
        series_description: Series Description of the SEG.
        uid_entropy: strings from which the SEG's UIDs are derived (same strings, same UIDs);
            empty for random UIDs.
        series_number: Series Number of the SEG.

    Returns:
        ``path``.

    Raises:
        DataError: masks and sources do not fit together, or highdicom refuses the sources.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    from sum_monai import __version__

    arr = np.asarray(masks).astype(bool)
    if arr.ndim != 4 or arr.shape[0] != len(sources) or arr.shape[3] != len(segments):
        raise DataError(
            path,
            f"masks of shape {arr.shape} do not fit {len(sources)} source frame(s) and {len(segments)} segment(s)",
        )
    algorithm = hd.AlgorithmIdentificationSequence(
        name=algorithm_name, version=algorithm_version, family=codes.cid7162.ArtificialIntelligence
    )
    descriptions = []
    for number, segment in enumerate(segments, start=1):
        desc = hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=segment.label,
            segmented_property_category=segment.category,
            segmented_property_type=segment.type,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        )
        if segment.modifier is not None:
            desc.SegmentedPropertyTypeModifierCodeSequence = [hd.sr.CodedConcept.from_code(segment.modifier)]
        descriptions.append(desc)
    entropy = list(uid_entropy)
    try:
        seg = hd.seg.Segmentation(
            source_images=list(sources),
            pixel_array=arr,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=generate_uid(entropy_srcs=[*entropy, "series"] if entropy else None),
            series_number=series_number,
            sop_instance_uid=generate_uid(entropy_srcs=[*entropy, "instance"] if entropy else None),
            instance_number=1,
            manufacturer="sum_monai",
            manufacturer_model_name=algorithm_name[:64],
            software_versions=f"sum_monai {__version__}",
            device_serial_number="none",
            series_description=series_description[:64],
            content_description=f"{algorithm_name} {algorithm_version}"[:64],
            omit_empty_frames=False,
        )
    except (ValueError, TypeError, AttributeError) as err:
        raise DataError(path, f"cannot build a DICOM SEG for these source images: {err}") from err
    return save_dicom(path, seg)
