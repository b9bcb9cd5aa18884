"""Mammography DICOM (MG) read the way radiologists see it, as MONAI reader and transforms.

Three pieces, used from the bundle configs as ``scripts.mammo.<Name>``:

* :class:`MammoDicomReader`: a :class:`monai.data.PydicomReader` whose data is the *presentation*
  image of a single-frame greyscale DICOM: modality LUT (Modality LUT Sequence, else Rescale
  Slope/Intercept), then VOI LUT (VOI LUT Sequence, else Window Center/Width with the VOI LUT
  Function, else none), then MONOCHROME1 inverted to MONOCHROME2 (bright = dense tissue), as
  float32. Use it as ``LoadImaged(keys="image", reader="$scripts.mammo.MammoDicomReader()")``.
  Presentation LUT Shape is not applied on top: in the MG/DX IODs ``INVERSE`` goes with
  MONOCHROME1 and names the same inversion (applying both would undo it).
* :class:`OrientBreast` / :class:`OrientBreastd`: flip the image (and its masks) horizontally so the
  chest wall is at the image left and the nipple points right; invertible (``monai`` ``Invertd``
  undoes it for predictions).
* :func:`presentation_array`, :func:`presentation_info`, :func:`decide_flip`: the plain functions
  behind them, for code that holds a ``pydicom`` dataset or a tensor.

Conventions (kept identical to MONAI's ``PydicomReader`` / ``PILReader`` for 2D):

* Array layout: ``(W, H)`` before ``EnsureChannelFirst``, i.e. the first spatial axis runs along the
  image columns (left to right) and the second along the rows (top to bottom); ``data[i, j]`` is
  the pixel of DICOM row ``j``, column ``i``. A PNG of the same pixels read with ``PILReader`` gives
  the same tensor, so masks stored as PNG line up pixel for pixel.
* Affine: projection mammograms have no patient frame (no Image Orientation/Position Patient), so
  the affine is the pixel grid: ``diag(column spacing, row spacing, 1, 1)``, the identity when the
  file gives no spacing, which is what ``PILReader`` gives a PNG (MONAI's own ``PydicomReader``
  would give a swapped identity there). Spacing comes from Pixel Spacing, else Imager Pixel Spacing,
  else 1 mm (``meta["spacing_source"]`` says which); ``meta["spacing"]`` and ``MetaTensor.pixdim``
  are per array axis (column spacing first).
* Breast orientation (:class:`OrientBreast`): chest wall left, nipple right, decided from Patient
  Orientation (first value ``A`` -> keep, ``P`` -> flip), else from laterality with the standard
  display convention (``R`` is shown with the chest wall on the right -> flip, ``L`` -> keep), else
  from image content (the chest-wall half carries more tissue).
* Multi-frame files (e.g. breast tomosynthesis) are rejected with a clear error: this is a 2D
  pipeline and picking one frame of a tomosynthesis stack silently would train on the wrong image.
* Metadata keeps only what the pipeline needs (no patient identifiers): modality, laterality,
  view position, patient orientation, original photometric interpretation, whether it was inverted,
  which VOI was applied, the value range of the data, the spacing and its source.
* Errors name the file: :class:`ValueError` ``"<path>: <problem>"``. A file that is not DICOM at all
  raises from ``read`` (so ``LoadImage`` may try its other readers, e.g. ``PILReader`` for a PNG
  mask); every problem with a DICOM file (damaged, no pixel data, multi-frame, colour, undecodable)
  raises from ``get_data``, outside ``LoadImage``'s reader fallback, so it is never silently read
  again by a generic reader that skips the presentation LUTs.

Decoding compressed pixel data uses pydicom's plugins, whichever is installed first in pydicom's
order: RLE with ``pylibjpeg-rle`` (about 0.06 s for a 4700x2600 16-bit mammogram; pydicom's own
numpy decoder, the fallback, takes about 0.3 s); JPEG 2000 with ``python-gdcm``, else Pillow;
JPEG Lossless (process 14, common in mammography archives), JPEG Extended and JPEG-LS with
``python-gdcm`` (JPEG-LS also with ``pyjpegls``). A missing plugin gives the decode error naming
the file and the plugins pydicom would need.

This module imports only numpy, torch, monai, pydicom and the standard library, so the bundle runs
without ``sum_monai``.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import torch
from monai.config import KeysCollection, PathLike
from monai.data import MetaTensor, PydicomReader
from monai.data.meta_obj import get_track_meta
from monai.transforms import Flip, InvertibleTransform, MapTransform
from monai.utils import TraceKeys, convert_to_tensor, ensure_tuple
from pydicom.dataset import Dataset

try:  # pydicom >= 3
    from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing
except ImportError:  # pydicom 2.x (MONAI Label 0.8.5's environment: pydicom-seg needs pydicom < 3)
    from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi, apply_windowing

__all__ = [
    "MammoDicomReader",
    "OrientBreast",
    "OrientBreastd",
    "decide_flip",
    "modality_range",
    "presentation_array",
    "presentation_info",
]

#: Photometric interpretations a mammogram may have; colour images are rejected.
GREYSCALE = ("MONOCHROME1", "MONOCHROME2")
#: Letters allowed in a Patient Orientation value (PS3.3 C.7.6.1.1.1).
_DIRECTIONS = set("APLRHF")


# --------------------------------------------------------------------------------------------------
# presentation pipeline on a pydicom dataset
# --------------------------------------------------------------------------------------------------


def modality_range(ds: Dataset) -> tuple[float, float]:
    """Return the (min, max) values the modality LUT stage can output for ``ds``.

    pydicom computes this range inside ``apply_windowing`` (it is the windowing output range) but
    does not expose it; it is needed to invert MONOCHROME1 and to normalise, so it is restated here
    with the same rules: Modality LUT Sequence -> ``[0, 2**bits - 1]``; else the stored-value range
    (Bits Stored, Pixel Representation), mapped through Rescale Slope/Intercept when both are present.

    Args:
        ds: a dataset with the Image Pixel module.

    Returns:
        ``(low, high)`` as floats, ``low <= high``.
    """
    if ds.get("ModalityLUTSequence"):
        depth = int(ds.ModalityLUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**depth - 1)
    bits = int(ds.BitsStored)
    if int(ds.get("PixelRepresentation", 0)) == 0:
        low, high = 0.0, float(2**bits - 1)
    else:
        low, high = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        low, high = sorted((low * slope + intercept, high * slope + intercept))
    return low, high


def _voi_source(ds: Dataset) -> str:
    """Which VOI stage applies, with pydicom's ``apply_voi_lut`` precedence: ``lut``, ``window`` or ``none``."""
    seq = ds.get("VOILUTSequence")
    if seq and seq[0].get("LUTDescriptor") is not None and seq[0].get("LUTData") is not None:
        return "lut"
    if ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        return "window"
    return "none"


def presentation_info(ds: Dataset, voi_index: int = 0, normalize: bool = False) -> dict[str, Any]:
    """Describe the presentation pipeline :func:`presentation_array` applies to ``ds``, without decoding.

    Args:
        ds: a single-frame greyscale dataset.
        voi_index: which VOI LUT item or window (Window Center/Width value) to use; 0 is the default
            view the modality chose.
        normalize: whether the data is mapped to ``[0, 1]`` (changes ``presentation_range``).

    Returns:
        ``photometric_interpretation`` (original), ``inverted`` (MONOCHROME1 -> MONOCHROME2),
        ``voi`` (``"lut"``, ``"window"`` or ``"none"``), ``voi_applied``, ``voi_function`` (``""``
        unless windowing) and ``presentation_range`` (float64 ``[low, high]`` the data can take).
    """
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    voi = _voi_source(ds)
    if voi == "lut":
        depth = int(ds.VOILUTSequence[voi_index].LUTDescriptor[2])
        low, high = 0.0, float(2**depth - 1)
    else:
        low, high = modality_range(ds)
    if normalize:
        low, high = 0.0, 1.0
    return {
        "photometric_interpretation": photometric,
        "inverted": photometric == "MONOCHROME1",
        "voi": voi,
        "voi_applied": voi != "none",
        "voi_function": str(ds.get("VOILUTFunction", "LINEAR")).upper() if voi == "window" else "",
        "presentation_range": np.array([low, high], dtype=np.float64),
    }


def _check_image(ds: Dataset, filename: str) -> None:
    """Raise ``ValueError("<filename>: <problem>")`` unless ``ds`` is one 2D greyscale image."""
    if "SegmentSequence" in ds:
        raise ValueError(f"{filename}: is a DICOM Segmentation, not a mammogram (read masks with their own reader)")
    if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ValueError(f"{filename}: has no pixel data (Pixel Data element missing or file truncated)")
    for tag in ("Rows", "Columns", "BitsAllocated", "BitsStored", "PhotometricInterpretation"):
        if ds.get(tag) is None:
            raise ValueError(f"{filename}: lacks the Image Pixel attribute {tag}")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ValueError(
            f"{filename}: has {frames} frames; this 2D mammography reader takes single-frame images "
            "(a multi-frame file such as breast tomosynthesis needs a 3D pipeline)"
        )
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    if photometric not in GREYSCALE or int(ds.get("SamplesPerPixel", 1)) != 1:
        raise ValueError(f"{filename}: is a {photometric} image; mammograms must be greyscale (MONOCHROME1/2)")


def presentation_array(ds: Dataset, voi_index: int = 0, normalize: bool = False, filename: str = "") -> np.ndarray:
    """Return the presentation image of ``ds`` as float32 ``(rows, columns)``.

    Modality LUT (``pydicom.pixels.apply_modality_lut``), then VOI LUT Sequence
    (``apply_voi``) or windowing (``apply_windowing``, honouring the VOI LUT Function), then
    MONOCHROME1 inversion within the output range (``low + high - value``), then optionally a linear
    map of that range to ``[0, 1]``.

    Args:
        ds: a single-frame greyscale dataset with pixel data.
        voi_index: which VOI LUT item or window to apply (0: the default one).
        normalize: map the output range (not the image min/max) linearly to ``[0, 1]``.
        filename: the file ``ds`` came from, for error messages (defaults to ``ds.filename``).

    Returns:
        float32 array in DICOM order ``(rows, columns)`` (readers swap it to MONAI's ``(W, H)``).

    Raises:
        ValueError: naming the file, if it is not one greyscale frame, cannot be decoded or its VOI
            attributes are invalid.
    """
    filename = filename or str(getattr(ds, "filename", "") or "<dataset>")
    _check_image(ds, filename)
    try:
        raw = ds.pixel_array
    except Exception as err:  # decoders raise ValueError/RuntimeError/AttributeError/NotImplementedError
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", "unknown transfer syntax")
        raise ValueError(f"{filename}: cannot decode the pixel data ({name}): {err}") from err
    info = presentation_info(ds, voi_index)
    try:
        arr = apply_modality_lut(raw, ds)
        if info["voi"] == "lut":
            if not np.issubdtype(arr.dtype, np.integer) and np.array_equal(arr, np.rint(arr)):
                arr = arr.astype(np.int64)  # integral rescale output: index the LUT exactly
            arr = apply_voi(arr, ds, index=voi_index)
        elif info["voi"] == "window":
            arr = apply_windowing(arr, ds, index=voi_index)
    except (ValueError, IndexError, NotImplementedError, AttributeError, TypeError) as err:
        raise ValueError(f"{filename}: invalid modality/VOI LUT attributes: {err}") from err
    out = np.asarray(arr, dtype=np.float32)
    low, high = (float(v) for v in info["presentation_range"])
    if info["inverted"]:
        out = np.float32(low + high) - out
    if normalize:
        out = (out - np.float32(low)) / np.float32(high - low if high > low else 1.0)
    return out


def _spacing(ds: Dataset, filename: str) -> tuple[list[float], str]:
    """(row spacing, column spacing) in mm and the tag it came from: Pixel Spacing, Imager Pixel Spacing, none."""
    for tag in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(tag)
        if value is None:
            continue
        try:
            pair = [float(v) for v in ensure_tuple(value)][:2]
        except (TypeError, ValueError):
            pair = []
        if len(pair) == 2 and all(np.isfinite(v) and v > 0 for v in pair):
            return pair, tag
        warnings.warn(
            f"{filename}: ignoring {tag} {list(ensure_tuple(value))} (not two positive numbers)", stacklevel=2
        )
    return [1.0, 1.0], "none"


def _laterality(ds: Dataset) -> str:
    """Image Laterality, else (series) Laterality, as ``"L"``, ``"R"`` or ``""`` (unknown, both, unpaired)."""
    for tag in ("ImageLaterality", "Laterality"):
        value = str(ds.get(tag, "") or "").strip().upper()
        if value in ("L", "R"):
            return value
    return ""


# --------------------------------------------------------------------------------------------------
# the MONAI reader
# --------------------------------------------------------------------------------------------------


class _Unreadable:
    """A file with the DICOM marker that pydicom could not parse; raised from ``get_data`` (see module doc)."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


class MammoDicomReader(PydicomReader):
    """MONAI image reader for single-frame mammography DICOM, returning the presentation image.

    Plugs into ``LoadImage`` / ``LoadImaged`` like any MONAI reader. The data is float32 ``(W, H)``
    (first axis along the image columns, as ``PydicomReader`` and ``PILReader`` give 2D images),
    after modality LUT, VOI LUT/window and MONOCHROME1 inversion (see :func:`presentation_array`).
    The affine is the pixel grid scaled by the pixel spacing (see the module doc), so ``spacing``,
    ``affine`` and ``MetaTensor.pixdim`` carry Pixel Spacing (else Imager Pixel Spacing).

    Metadata added (every file gets every key, so batches collate): ``modality``, ``laterality``
    (``"L"``/``"R"``/``""``), ``view_position``, ``patient_orientation`` (values joined with
    ``"\\"``), ``photometric_interpretation`` (original), ``inverted``, ``voi``
    (``"lut"``/``"window"``/``"none"``), ``voi_applied``, ``voi_function``, ``presentation_range``
    (``[low, high]`` the data can take), ``spacing_source``. Nothing else from the header is copied
    (no patient identifiers).

    Args:
        channel_dim: as in ``PydicomReader`` (``None``: no channel; ``EnsureChannelFirst`` adds one).
        voi_index: which VOI LUT item / window value to apply when the file has several (0: default).
        normalize: map the presentation range linearly to ``[0, 1]`` (the same scale for every file,
            whatever its bit depth; not a per-image min-max).
        kwargs: passed to ``pydicom.dcmread``.

    Raises (from ``read``/``get_data``):
        ValueError: ``"<path>: <problem>"`` for a folder, a missing file, a non-DICOM file, a
            damaged file, no pixel data, several frames, a colour image or undecodable pixel data.

    Example:
        >>> from monai.transforms import LoadImage
        >>> img = LoadImage(reader=MammoDicomReader(), ensure_channel_first=True)("1-130.dcm")  # doctest: +SKIP
        >>> img.shape, img.meta["laterality"], img.meta["voi"]  # doctest: +SKIP
        (torch.Size([1, 2864, 4432]), 'L', 'none')
    """

    def __init__(
        self, channel_dim: str | int | None = None, voi_index: int = 0, normalize: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(channel_dim=channel_dim, affine_lps_to_ras=True, swap_ij=True, **kwargs)
        self.voi_index = voi_index
        self.normalize = normalize
        self.filenames: list = []
        self.has_series = False

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        """True if every file ends in ``.dcm``/``.dicom`` or carries the DICOM marker."""
        for name in ensure_tuple(filename):
            text = str(name)
            if text.lower().endswith((".dcm", ".dicom")):
                continue
            if not (Path(text).is_file() and pydicom.misc.is_dicom(text)):
                return False
        return True

    def read(self, data: Sequence[PathLike] | PathLike, **kwargs: Any) -> Any:
        """Parse one file or a list of files (stacked as channels by ``get_data``); folders are refused.

        Args:
            data: a file name or a list of file names.
            kwargs: ``pydicom.dcmread`` arguments, overriding the constructor's.

        Returns:
            A ``pydicom`` dataset, or a list of them for several files.

        Raises:
            ValueError: naming the file, if it is a folder, missing or not DICOM at all.
        """
        filenames = [str(name) for name in ensure_tuple(data)]
        options = {**self.kwargs, **kwargs}
        datasets = [self._read_one(name, options) for name in filenames]
        self.filenames = list(filenames)
        self.has_series = False
        return datasets[0] if len(datasets) == 1 else datasets

    @staticmethod
    def _read_one(name: str, options: dict) -> Dataset | _Unreadable:
        path = Path(name)
        if path.is_dir():
            raise ValueError(f"{name}: is a folder; MammoDicomReader reads one single-frame DICOM file per image")
        if not path.is_file():
            raise ValueError(f"{name}: file not found")
        if not pydicom.misc.is_dicom(name):
            raise ValueError(f"{name}: not a DICOM file (no 'DICM' marker after the 128-byte preamble)")
        try:
            return pydicom.dcmread(name, **options)
        except Exception as err:  # any parse failure of a file that claims to be DICOM
            return _Unreadable(f"{name}: damaged DICOM file, cannot parse it ({type(err).__name__}: {err})")

    def _get_array_data(self, img: Dataset | _Unreadable, filename: PathLike) -> np.ndarray:
        """Presentation image of one dataset, DICOM order ``(rows, columns)`` (``get_data`` swaps it)."""
        if isinstance(img, _Unreadable):
            raise ValueError(img.message)
        return presentation_array(img, self.voi_index, self.normalize, filename=str(filename))

    def _get_meta_dict(self, img: Dataset) -> dict:
        """The few tags the pipeline needs (no identifiers); ``spacing`` in DICOM (row, column) order."""
        filename = str(getattr(img, "filename", "") or "")
        spacing, source = _spacing(img, filename)
        orientation = "\\".join(str(v) for v in ensure_tuple(img.get("PatientOrientation") or ()))
        meta: dict[str, Any] = {
            "modality": str(img.get("Modality", "") or ""),
            "laterality": _laterality(img),
            "view_position": str(img.get("ViewPosition", "") or ""),
            "patient_orientation": orientation,
            "spacing_source": source,
            "spacing": np.asarray(spacing, dtype=np.float64),
        }
        meta.update(presentation_info(img, self.voi_index, self.normalize))
        return meta

    def _get_affine(self, metadata: dict, lps_to_ras: bool = True) -> np.ndarray:
        """Pixel-grid affine in DICOM (row, column) index order; ``get_data`` swaps it to ``(W, H)``.

        World x runs along the image columns (column spacing), world y along the rows (row
        spacing): after the swap the affine is ``diag(column spacing, row spacing, 1, 1)``, the same
        frame ``PILReader`` gives a PNG. ``lps_to_ras`` is ignored: there is no patient frame.
        """
        row_spacing, col_spacing = (float(v) for v in metadata["spacing"][:2])
        affine = np.eye(4)
        affine[0, 0], affine[0, 1] = 0.0, col_spacing
        affine[1, 0], affine[1, 1] = row_spacing, 0.0
        return affine


# --------------------------------------------------------------------------------------------------
# breast orientation
# --------------------------------------------------------------------------------------------------


def chest_wall_on_right(img: torch.Tensor | np.ndarray) -> bool:
    """Guess from the pixels whether the chest wall is at the image right (bright = tissue).

    Intensity mass: clip the (subsampled, channel-averaged) image to its 1st-99th percentiles,
    subtract the 1st percentile (background) and compare the summed mass of the right and left
    halves. The chest-wall half holds the base of the breast (and the pectoral muscle in MLO), the
    other half mostly background; clipping and summing over whole halves keep small bright markers
    and film edges from deciding. A tie (e.g. a blank image) counts as "left".

    Args:
        img: channel-first 2D image ``(C, W, H)`` in MONAI layout (first spatial axis along columns).

    Returns:
        True if the right half carries more tissue.
    """
    x = img.as_tensor() if isinstance(img, MetaTensor) else torch.as_tensor(img)
    if x.ndim != 3:
        raise ValueError(f"expected a channel-first 2D image (C, W, H), got shape {tuple(x.shape)}")
    step = max(1, max(x.shape[1:]) // 512)
    x = x[:, ::step, ::step].float().mean(0)
    low, high = torch.quantile(x.flatten(), torch.tensor([0.01, 0.99], dtype=x.dtype))
    mass = (x.clamp(low, high) - low).sum(dim=1)  # one value per column
    half = mass.shape[0] // 2
    return bool(mass[mass.shape[0] - half :].sum() > mass[:half].sum())


def decide_flip(img: torch.Tensor | np.ndarray, meta: Mapping[str, Any] | None = None) -> tuple[bool, str]:
    """Decide whether a mammogram must be flipped so the chest wall is left and the nipple right.

    In order: Patient Orientation (its first value is the direction the rows run, left to right:
    ``A`` (anterior, towards the nipple) -> no flip, ``P`` -> flip); else laterality with the
    standard display convention (a right breast is shown with its chest wall on the right -> flip,
    left -> no flip); else :func:`chest_wall_on_right`. Values that are not valid directions (some
    archives put the view, e.g. ``"CC"``, there) are skipped.

    Args:
        img: channel-first 2D image ``(C, W, H)``.
        meta: metadata as :class:`MammoDicomReader` writes it (``patient_orientation``,
            ``laterality``); ``None`` or missing keys fall through to the image content.

    Returns:
        ``(flip, basis)``, basis one of ``"PatientOrientation"``, ``"laterality"``, ``"content"``.
    """
    meta = meta or {}
    first = str(meta.get("patient_orientation", "") or "").split("\\")[0].strip().upper()
    if first and set(first) <= _DIRECTIONS and first[0] in "AP":
        return first[0] == "P", "PatientOrientation"
    laterality = str(meta.get("laterality", "") or "").strip().upper()
    if laterality in ("L", "R"):
        return laterality == "R", "laterality"
    return chest_wall_on_right(img), "content"


class OrientBreast(InvertibleTransform):
    """Flip a 2D mammogram horizontally so the chest wall is at the image left, nipple pointing right.

    MONAI has no such transform (``Orientation`` needs a patient-frame affine, which projection
    mammograms lack), so this one only decides (:func:`decide_flip`) and delegates the flip to
    ``monai.transforms.Flip(spatial_axis=0)``, which also updates the affine. The decision and its
    basis are written to ``meta["orient_flipped"]`` and ``meta["orient_basis"]`` and to the
    transform trace, so ``inverse`` (and ``monai.transforms.Invertd``) undo exactly what was done.
    Apply it once per image (a second call decides afresh from the unchanged tags).

    Args:
        use_metadata: decide from Patient Orientation / laterality in ``img.meta`` when present;
            False decides from the pixels only.

    Example:
        >>> flipped = OrientBreast()(img)  # doctest: +SKIP
        >>> flipped.meta["orient_flipped"], flipped.meta["orient_basis"]  # doctest: +SKIP
        (True, 'laterality')
    """

    backend = Flip.backend

    def __init__(self, use_metadata: bool = True) -> None:
        self.use_metadata = use_metadata
        self.flipper = Flip(spatial_axis=0)

    def decide(self, img: torch.Tensor | np.ndarray) -> tuple[bool, str]:
        """``(flip, basis)`` for ``img`` (see :func:`decide_flip`)."""
        meta = img.meta if self.use_metadata and isinstance(img, MetaTensor) else None
        return decide_flip(img, meta)

    def __call__(self, img: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Orient ``img`` (channel-first ``(C, W, H)``)."""
        flip, basis = self.decide(img)
        return self.apply(img, flip, basis)

    def apply(self, img: torch.Tensor | np.ndarray, flip: bool, basis: str) -> torch.Tensor:
        """Apply a decision made elsewhere (e.g. on the image, for its mask) and record it."""
        img = convert_to_tensor(img, track_meta=get_track_meta())
        out = self.flipper(img) if flip else img
        if isinstance(out, MetaTensor):
            out.meta["orient_flipped"] = bool(flip)
            out.meta["orient_basis"] = basis
        self.push_transform(out, extra_info={"flipped": bool(flip), "basis": basis})
        return out

    def inverse(self, data: torch.Tensor) -> torch.Tensor:
        """Undo the recorded flip (pops this transform's and, if it flipped, ``Flip``'s trace)."""
        transform = self.pop_transform(data)
        if transform[TraceKeys.EXTRA_INFO]["flipped"]:
            return self.flipper.inverse(data)
        return data


class OrientBreastd(MapTransform, InvertibleTransform):
    """Dictionary wrapper of :class:`OrientBreast`: one decision, from the image, applied to every key.

    The side is decided once from ``image_key`` (its metadata, else its pixels) and the same flip
    is applied to all ``keys``, so masks follow their image. Invertible per key, as ``Invertd``
    needs for predictions.

    Args:
        keys: keys to flip, e.g. ``["image", "label"]``.
        image_key: key to decide from; defaults to the first of ``keys``.
        use_metadata: see :class:`OrientBreast`.
        allow_missing_keys: do not raise for missing keys other than ``image_key``.

    Raises:
        KeyError: if ``image_key`` is absent from the data.
    """

    backend = OrientBreast.backend

    def __init__(
        self,
        keys: KeysCollection,
        image_key: str | None = None,
        use_metadata: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.image_key = image_key if image_key is not None else self.keys[0]
        self.orient = OrientBreast(use_metadata=use_metadata)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        if self.image_key not in d:
            raise KeyError(f"OrientBreastd decides from key {self.image_key!r}, which is not in the data")
        flip, basis = self.orient.decide(d[self.image_key])
        for key in self.key_iterator(d):
            d[key] = self.orient.apply(d[key], flip, basis)
        return d

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.orient.inverse(d[key])
        return d
