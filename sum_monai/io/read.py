"""Open any supported image file or DICOM series folder with a clear error when it cannot be used.

One small registry in the spirit of nnU-Net v2's ``nnunetv2/imageio``: the reader is chosen by the
file suffix (or "folder" for a DICOM series) and every file is opened the same way, with MONAI's
:class:`~monai.transforms.LoadImage` and the matching MONAI reader:

=====================  ===================  ==============================================
input                  MONAI reader         geometry
=====================  ===================  ==============================================
``.png .jpg .pgm``     ``PILReader``        pixel grid only (identity affine, spacing 1)
``.dcm`` (one file)    ``PydicomReader``    from the DICOM tags (RAS affine); projection
                                            images (MG) without patient position: spacing
                                            from PixelSpacing, no affine
DICOM series folder    ``ITKReader``        from the DICOM tags (RAS affine)
``.nrrd .nhdr``        ``ITKReader``        from the header (RAS affine)
``.nii .nii.gz``       ``NibabelReader``    from the header (RAS affine)
=====================  ===================  ==============================================

A DICOM file without a suffix (common for MG exports) is recognised by its ``DICM`` preamble.
Arrays come channel-first with MONAI's axis order (for 2D PNG and DICOM: ``(C, W, H)``).

Every failure becomes one :class:`~sum_monai.errors.DataError` naming the file and the problem
(missing, empty, corrupt or truncated, DICOM without pixel data, unsupported suffix, NaN/Inf
values, empty or mixed DICOM series folder), so validation, fingerprinting and prediction report
data problems in the same words.

Example:
    >>> from sum_monai.io.read import read_image
    >>> img = read_image("data/busi/benign/benign (1).png")   # doctest: +SKIP
    >>> img.channels, img.spatial_shape, img.spacing            # doctest: +SKIP
    (1, (562, 471), (1.0, 1.0))
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sum_monai.errors import DataError

if TYPE_CHECKING:  # heavy imports stay lazy so that `sum-monai --help` answers at once
    from monai.data import ImageReader, MetaTensor
    from monai.transforms import LoadImage

__all__ = [
    "FOLDER",
    "LoadedImage",
    "ReaderSpec",
    "image_suffix",
    "is_supported",
    "read_image",
    "reader_spec",
    "register_reader",
    "supported_suffixes",
]

#: Registry key used for a DICOM series folder.
FOLDER = "<folder>"


@dataclass(frozen=True)
class ReaderSpec:
    """How one kind of input is opened.

    Args:
        reader: MONAI reader class name in :mod:`monai.data` (``"PILReader"``, ``"ITKReader"`` ...).
        kind: words used in error messages (``"PNG image"``, ``"NIfTI volume"``).
        geometric: whether the format stores spacing and orientation; PNG/JPEG do not, so
            validation compares only their shapes.
        kwargs: keyword arguments for the reader.
    """

    reader: str
    kind: str
    geometric: bool = True
    kwargs: tuple[tuple[str, Any], ...] = ()

    def make(self) -> ImageReader:
        """Return a new reader instance."""
        import monai.data

        return getattr(monai.data, self.reader)(**dict(self.kwargs))


#: PNG / JPEG: the stored channels (palettes expanded, 16-bit kept), sizes checked before decoding,
#: by the same code the bundles' PIL converter uses (``scripts/pil.py``).
def _pil_expanded(image: Any) -> Any:
    """``scripts/pil.py``'s :func:`expanded` (imported when first used: it imports MONAI)."""
    from sum_monai.bundle.bundle_scripts.pil import expanded

    return expanded(image)


_PIL = (("converter", _pil_expanded),)

_REGISTRY: dict[str, ReaderSpec] = {
    ".png": ReaderSpec("PILReader", "PNG image", geometric=False, kwargs=_PIL),
    ".jpg": ReaderSpec("PILReader", "JPEG image", geometric=False, kwargs=_PIL),
    ".jpeg": ReaderSpec("PILReader", "JPEG image", geometric=False, kwargs=_PIL),
    ".pgm": ReaderSpec("PILReader", "PGM image", geometric=False, kwargs=_PIL),
    ".dcm": ReaderSpec("PydicomReader", "DICOM file"),
    ".nii": ReaderSpec("NibabelReader", "NIfTI volume"),
    ".nii.gz": ReaderSpec("NibabelReader", "NIfTI volume"),
    ".nrrd": ReaderSpec("ITKReader", "NRRD volume"),
    ".nhdr": ReaderSpec("ITKReader", "NRRD volume"),
    FOLDER: ReaderSpec("ITKReader", "DICOM series folder"),
}


def register_reader(suffix: str, spec: ReaderSpec) -> None:
    """Add or replace the reader used for files ending in ``suffix`` (e.g. ``".mha"``).

    Args:
        suffix: lower-case suffix with its dot (``".nii.gz"`` style double suffixes allowed), or
            :data:`FOLDER` for folders.
        spec: the reader to use.
    """
    _REGISTRY[suffix.lower()] = spec


def supported_suffixes() -> list[str]:
    """Suffixes with a registered reader, sorted (``FOLDER`` excluded)."""
    return sorted(s for s in _REGISTRY if s != FOLDER)


def image_suffix(path: str | Path) -> str:
    """Return the registered suffix of ``path`` in lower case, ``""`` when none matches.

    Double suffixes win over single ones, so ``a.nii.gz`` gives ``".nii.gz"``.

    Example:
        >>> image_suffix("case_0000.NII.GZ"), image_suffix("x.png"), image_suffix("notes.txt")
        ('.nii.gz', '.png', '')
    """
    name = Path(path).name.lower()
    for suffix in sorted(supported_suffixes(), key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    return ""


def _looks_like_dicom(path: Path) -> bool:
    """True if the file has the DICOM Part 10 preamble (``DICM`` at byte 128)."""
    try:
        with path.open("rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def is_supported(path: str | Path) -> bool:
    """True if :func:`read_image` has a reader for ``path`` (by suffix, folder or DICOM preamble)."""
    path = Path(path)
    if path.is_dir():
        return True
    return bool(image_suffix(path)) or (path.is_file() and _looks_like_dicom(path))


def reader_spec(path: str | Path) -> ReaderSpec:
    """Pick the reader for ``path`` without reading pixels.

    Raises:
        DataError: ``path`` does not exist, is an empty file or has an unsupported suffix.
    """
    path = Path(path)
    if path.is_dir():
        return _REGISTRY[FOLDER]
    if not path.exists():
        raise DataError(path, "file not found")
    suffix = image_suffix(path)
    if suffix:
        return _REGISTRY[suffix]
    if _looks_like_dicom(path):
        return _REGISTRY[".dcm"]
    shown = "".join(path.suffixes) or "(no suffix)"
    raise DataError(
        path,
        f"unsupported file type '{shown}'; supported: {', '.join(supported_suffixes())}, "
        "a DICOM file with the DICM preamble, or a DICOM series folder",
    )


@dataclass(frozen=True)
class LoadedImage:
    """An opened image: channel-first array plus the geometry validation needs.

    Attributes:
        path: the file or folder read.
        array: channel-first ``MetaTensor`` as MONAI's ``LoadImage(ensure_channel_first=True)``
            returns it (metadata in ``array.meta``).
        reader: name of the MONAI reader used.
        geometric: False where position and orientation are unknown (PNG, JPEG, DICOM projection
            images such as MG without ImagePositionPatient / ImageOrientationPatient).
        pixel_spacing: spacing from the DICOM PixelSpacing / ImagerPixelSpacing tag where MONAI's
            affine cannot carry it (projection images); None otherwise.
    """

    path: Path
    array: MetaTensor
    reader: str
    geometric: bool
    pixel_spacing: tuple[float, ...] | None = None

    @property
    def channels(self) -> int:
        """Number of channels (1 for grey, 3 for RGB, 4 for RGBA, n for a 4D NIfTI)."""
        return int(self.array.shape[0])

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Spatial size in MONAI's axis order (``(W, H)`` for 2D, ``(X, Y, Z)`` for 3D)."""
        return tuple(int(s) for s in self.array.shape[1:])

    @property
    def affine(self) -> np.ndarray:
        """4x4 voxel-to-world (RAS, mm) matrix; identity for PNG/JPEG."""
        return np.asarray(self.array.affine, dtype=np.float64)

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size along each spatial axis in mm (1.0 for PNG/JPEG)."""
        if self.pixel_spacing is not None:
            return self.pixel_spacing
        return tuple(float(s) for s in np.asarray(self.array.pixdim, dtype=np.float64))

    def numpy(self) -> np.ndarray:
        """The pixel data as a numpy array (channel-first)."""
        return np.asarray(self.array.detach().cpu().numpy())


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _root_cause(err: BaseException) -> BaseException:
    """The innermost exception (MONAI wraps reader errors in its own)."""
    seen = set()
    while (err.__cause__ or err.__context__) is not None and id(err) not in seen:
        seen.add(id(err))
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    return err


def _own_problem(err: BaseException, path: Path) -> str | None:
    """The problem of a ``ValueError("<path>: <problem>")`` raised by our own checks, else None."""
    if not isinstance(err, ValueError):
        return None
    text = str(err)
    for name in {str(path), str(path.absolute()), str(path.resolve())}:
        if text.startswith(name + ": "):
            return text[len(name) + 2 :]
    return None


def _explain_dicom_failure(path: Path, err: BaseException) -> str:
    """Say why a DICOM file failed: unreadable header, no pixel data, or bad pixel data."""
    import pydicom

    try:
        ds = pydicom.dcmread(path)
    except Exception as header_err:
        return f"not a readable DICOM file (corrupt or truncated header): {_first_line(header_err)}"
    if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        return (
            "DICOM file has no pixel data (no PixelData element): it holds no image, "
            "or it was truncated before its pixels"
        )
    return f"DICOM pixel data cannot be decoded (corrupt or truncated file): {_first_line(err)}"


#: DICOM tags (as MONAI's PydicomReader keys them) for a projection image's pixel size.
_SPACING_TAGS = ("00280030", "00181164")  # PixelSpacing, ImagerPixelSpacing


def _projection_spacing(array: MetaTensor) -> tuple[float, ...] | None:
    """(column, row) pixel size of a 2D DICOM without patient position/orientation, else None.

    MONAI's PydicomReader builds its affine from ImagePositionPatient / ImageOrientationPatient
    and falls back to the identity without them (as in MG, DX, CR), dropping PixelSpacing.
    """
    meta = array.meta
    if "00200037" in meta and "00200032" in meta:
        return None
    for tag in _SPACING_TAGS:
        value = (meta.get(tag) or {}).get("Value")
        if value and len(value) >= 2:
            row_spacing, column_spacing = float(value[0]), float(value[1])
            return (column_spacing, row_spacing)  # MONAI axis 0 runs along a row: column spacing
    return None


def _check_series_folder(path: Path) -> None:
    """Fail early on an empty folder (ITK would say only 'no DICOMs') or on a broken slice.

    ITK skips or misreads a damaged slice and the error surfaces later as a geometry mismatch
    with no file named, so every DICOM file of the folder is parsed here and its pixel data
    length compared with Rows x Columns x Samples x Bits Allocated.
    """
    import pydicom

    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise DataError(path, "empty folder: expected a DICOM series (the .dcm files of one series)")
    for file in files:
        if file.stat().st_size == 0:
            raise DataError(file, f"file is empty (0 bytes): a broken slice of the DICOM series in {path}")
        if not pydicom.misc.is_dicom(str(file)):
            continue  # a README or DICOMDIR-less extra file: ITK ignores it too
        try:
            ds = pydicom.dcmread(file)
            data = ds.get("PixelData")
            if data is None:
                raise ValueError("no pixel data")
            if "TransferSyntaxUID" in ds.file_meta and not ds.file_meta.TransferSyntaxUID.is_compressed:
                frames = int(ds.get("NumberOfFrames", 1) or 1)
                needed = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * frames
                needed = needed * int(ds.BitsAllocated) // 8
                if len(data) < needed:
                    raise ValueError(f"pixel data holds {len(data)} of {needed} bytes")
        except Exception as err:
            raise DataError(
                file, f"broken slice of the DICOM series in {path} (truncated or corrupt): {_first_line(err)}"
            ) from err


#: Smallest |determinant| of the affine's 3x3 part (mm^3 per voxel) for a usable geometry.
MIN_VOXEL_VOLUME = 1e-9


def _geometry_problem(affine: np.ndarray) -> str | None:
    """Why a voxel-to-world matrix cannot place the voxels (None when it can)."""
    aff = np.asarray(affine, dtype=np.float64)
    if aff.shape != (4, 4) and aff.shape != (3, 3):
        return None
    n = aff.shape[0] - 1
    if not np.all(np.isfinite(aff)):
        return "degenerate geometry: the affine (voxel-to-world matrix) holds NaN or infinite values"
    norms = np.linalg.norm(aff[:n, :n], axis=0)
    if np.any(norms == 0):
        axes = ", ".join(str(i) for i in np.flatnonzero(norms == 0))
        return f"degenerate geometry: the affine has a zero column (voxel axis {axes} has no direction or size)"
    if abs(np.linalg.det(aff[:n, :n])) < MIN_VOXEL_VOLUME:
        return "degenerate geometry: the affine's axes are parallel (the voxel-to-world matrix cannot be inverted)"
    return None


def _nifti_header_problem(path: Path) -> str | None:
    """Degenerate geometry in a NIfTI header (read without the voxels), else None."""
    import nibabel as nib

    try:
        image = nib.load(str(path))
    except Exception:
        return None  # not readable as NIfTI: the reader reports it
    return _geometry_problem(image.affine)


@functools.lru_cache(maxsize=8)
def _loader(dtype: str | None) -> LoadImage:
    """One LoadImage per dtype: building it instantiates every MONAI reader, which is slow."""
    from monai.transforms import LoadImage

    return LoadImage(image_only=True, dtype=dtype, ensure_channel_first=True)


@functools.lru_cache(maxsize=32)
def _reader(spec: ReaderSpec) -> ImageReader:
    """One reader instance per spec (MONAI readers keep no state between reads)."""
    return spec.make()


def read_image(
    path: str | Path, *, dtype: Any = np.float32, check_finite: bool = True, loader: Callable[[str], Any] | None = None
) -> LoadedImage:
    """Open an image file or DICOM series folder with MONAI and check that it is usable.

    Args:
        path: a file with a registered suffix, a DICOM file, or a folder holding one DICOM series.
        dtype: array dtype (``np.float32`` as MONAI's default; ``None`` keeps the stored type).
        check_finite: reject arrays holding NaN or infinite values.
        loader: read with this instead of the registry's reader: a bundle's own loading
            (:func:`sum_monai.bundle.readers.bundle_loader`), so the array is what its network
            is given (``dtype`` is then the bundle's); the checks and errors stay the same.

    Returns:
        The channel-first array with its geometry (:class:`LoadedImage`).

    Raises:
        DataError: missing or empty file, unsupported suffix, corrupt or truncated file, DICOM
            without pixel data, empty or mixed DICOM series folder, NaN/Inf values.

    Example:
        >>> img = read_image("data/mri/dicom/case01/pre")       # doctest: +SKIP
        >>> img.spatial_shape, img.spacing                         # doctest: +SKIP
        ((128, 128, 40), (0.7, 0.7, 2.0))
    """
    path = Path(path)
    spec = reader_spec(path)
    if path.is_dir():
        _check_series_folder(path)
    elif path.stat().st_size == 0:
        raise DataError(path, f"file is empty (0 bytes): not a {spec.kind}")
    if spec.reader == "NibabelReader" and (problem := _nifti_header_problem(path)):
        raise DataError(path, problem)
    given = loader
    loader = _loader(np.dtype(dtype).str if dtype is not None else None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            array = given(str(path)) if given is not None else loader(str(path), reader=_reader(spec))
        except DataError:
            raise
        except Exception as err:
            root = _root_cause(err)
            own = _own_problem(root, path)
            if own is not None:  # the size or mode check of scripts/pil.py, which names the file
                problem = own
            elif type(root).__name__ == "DecompressionBombError":  # PIL's own limit, checked in open()
                from sum_monai.bundle.bundle_scripts import pil

                size = re.search(r"\((\d+) pixels\)", str(root))
                shown = f"{int(size.group(1)) / 1e6:.0f} M pixels" if size else "its size"
                problem = (
                    f"image of {shown} exceeds the limit of {pil.MAX_PIXELS / 1e6:.0f} M pixels (refused before decoding: "
                    "a decompression bomb?)"
                )
            elif spec.reader == "PydicomReader":
                problem = _explain_dicom_failure(path, err)
            elif path.is_dir():
                problem = f"cannot be read as a DICOM series (no readable DICOM files?): {_first_line(err)}"
            else:
                problem = f"cannot be read as a {spec.kind} (corrupt or truncated file?): {_first_line(err)}"
            raise DataError(path, problem) from err
    projection = spec.kind == "DICOM file" and not (
        "00200037" in array.meta and "00200032" in array.meta
    )
    for w in caught:  # ITKReader only warns and reads the first series: make that an error
        if "more than one DICOM series" in str(w.message):
            raise DataError(
                path, "folder holds more than one DICOM series; put each series in its own folder"
            )
        if projection and "ImageOrientationPatient" in str(w.message):
            continue  # handled: such images count as non-geometric, spacing from PixelSpacing
        warnings.warn(w.message, stacklevel=2)  # re-emit the rest (shown once per message)
    if spec.geometric and not projection and (problem := _geometry_problem(array.affine)):
        raise DataError(path, problem)
    if check_finite and array.is_floating_point():
        import torch

        n_nan = int(torch.isnan(array).sum())
        n_inf = int(torch.isinf(array).sum())
        if n_nan or n_inf:
            raise DataError(path, f"{spec.kind} holds {n_nan} NaN and {n_inf} infinite values")
    return LoadedImage(
        path=path,
        array=array,
        reader=spec.reader,
        geometric=spec.geometric and not projection,
        pixel_spacing=_projection_spacing(array) if projection else None,
    )
