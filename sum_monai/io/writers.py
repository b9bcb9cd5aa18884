"""Atomic writers for the files the package produces: PNG, NIfTI and DICOM.

Every writer goes through :mod:`sum_monai.utils.atomic`, so a file appears whole or not at all,
and writes byte-identical files for identical input (no time stamps, no temporary file names
inside the output), so seeded generators stay reproducible down to the byte.

Array layout: these writers take plain numpy arrays in the file's own layout: PNG as
``(rows, cols)`` (or ``(rows, cols, 3)`` for RGB) exactly as PIL reads it; NIfTI as
``(x, y, z)`` voxel order as nibabel reads it. Code holding MONAI channel-first ``(C, W, H)``
tensors must squeeze the channel and transpose the spatial axes first (``arr[0].T`` for 2D).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from sum_monai.errors import DataError
from sum_monai.utils.atomic import atomic_path, atomic_write_bytes

__all__ = ["save_dicom", "save_nifti", "save_png"]


def save_png(path: str | Path, array: np.ndarray) -> Path:
    """Write a 2D grayscale (uint8 or uint16) or RGB (uint8) array as a lossless PNG.

    Args:
        path: the ``.png`` file to write (parent folders are created).
        array: ``(rows, cols)`` uint8 / uint16, or ``(rows, cols, 3)`` uint8 for RGB. uint16 is
            stored as a 16-bit grayscale PNG.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        DataError: the array has another dtype or shape (nothing is written).

    Example:
        >>> import tempfile, numpy as np
        >>> from PIL import Image
        >>> p = save_png(tempfile.mkdtemp() + "/m.png", np.full((4, 6), 255, np.uint8))
        >>> Image.open(p).size  # PIL gives (width, height)
        (6, 4)
    """
    from PIL import Image

    path = Path(path)
    arr = np.asarray(array)
    if arr.ndim == 2 and arr.dtype in (np.uint8, np.uint16):
        image = Image.fromarray(np.ascontiguousarray(arr))
    elif arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8:
        image = Image.fromarray(np.ascontiguousarray(arr), mode="RGB")
    else:
        raise DataError(
            path,
            f"cannot write a {arr.dtype} array of shape {arr.shape} as PNG: expected (rows, cols) "
            "uint8/uint16 or (rows, cols, 3) uint8",
        )
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path


def save_nifti(path: str | Path, array: np.ndarray, affine: np.ndarray, compresslevel: int = 6) -> Path:
    """Write ``array`` as NIfTI-1 with ``affine`` as both qform and sform (code 1, scanner, mm).

    ``.nii.gz`` files are gzip-compressed here with a zero time stamp and no file name in the
    gzip header (nibabel would store the temporary file's name and the current time, which would
    make identical volumes differ byte-wise).

    Args:
        path: ``.nii`` or ``.nii.gz`` file.
        array: voxel data in nibabel ``(x, y, z[, ...])`` order; its dtype is kept.
        affine: 4x4 voxel-to-world (RAS+, mm) matrix.
        compresslevel: gzip level for ``.nii.gz`` (6 trades size against speed).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        DataError: unsupported extension, array of fewer than 2 dimensions or a bad affine.
    """
    import nibabel as nib

    path = Path(path)
    name = path.name.lower()
    if not (name.endswith(".nii") or name.endswith(".nii.gz")):
        raise DataError(path, "NIfTI files must end in .nii or .nii.gz")
    arr = np.asarray(array)
    aff = np.asarray(affine, dtype=np.float64)
    if arr.ndim < 2:
        raise DataError(path, f"cannot write a {arr.ndim}D array as NIfTI")
    if aff.shape != (4, 4) or not np.all(np.isfinite(aff)) or abs(np.linalg.det(aff[:3, :3])) < 1e-12:
        raise DataError(path, "the affine must be a finite, invertible 4x4 matrix")
    image = nib.Nifti1Image(arr, aff)
    image.set_qform(aff, code=1)
    image.set_sform(aff, code=1)
    image.header.set_xyzt_units("mm", "sec")
    data = image.to_bytes()
    if name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=compresslevel, mtime=0)
    return atomic_write_bytes(path, data)


def save_dicom(path: str | Path, dataset) -> Path:
    """Write a pydicom ``Dataset`` as a DICOM Part 10 file (preamble + file meta).

    When the dataset has no ``file_meta``, one is made from its SOP Class / Instance UIDs with
    Explicit VR Little Endian; pydicom fills in the remaining meta elements.

    Args:
        path: the ``.dcm`` file.
        dataset: a :class:`pydicom.dataset.Dataset` with ``SOPClassUID`` and ``SOPInstanceUID``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        DataError: the dataset lacks the UIDs a DICOM file needs.
    """
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    path = Path(path)
    for keyword in ("SOPClassUID", "SOPInstanceUID"):
        if keyword not in dataset:
            raise DataError(path, f"cannot write DICOM without {keyword}")
    if not getattr(dataset, "file_meta", None):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = dataset.SOPClassUID
        meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        dataset.file_meta = meta
    with atomic_path(path) as tmp:
        dataset.save_as(tmp, enforce_file_format=True)
    return path
