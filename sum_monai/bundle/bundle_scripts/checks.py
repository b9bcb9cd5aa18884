"""Input checks a bundle makes itself, before reading: the DICOM Modality it was trained for.

Why a transform of our own: a DICOM of another modality (a CT slice given to the mammography
model, a mammogram to the ultrasound model) is read without any error by MONAI's readers and
gives a confident, meaningless mask; and MONAI's readers do not keep the Modality tag in the
metadata (``PydicomReader`` prunes it, ``ITKReader`` drops the tags of a series), so it cannot be
checked after ``LoadImaged``. :class:`CheckModalityd` therefore runs first, on the paths, and
reads only the header of one file (a series folder: its first DICOM file).

Non-DICOM inputs (PNG, NIfTI, NRRD) carry no modality and pass.

This file is synced from ``sum_monai/bundle/bundle_scripts/checks.py``; edit it there.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

from monai.config import KeysCollection
from monai.transforms import MapTransform

#: Words for the modalities named in messages.
MODALITY_NAMES = {
    "MG": "mammography",
    "US": "ultrasound",
    "MR": "MRI",
    "CT": "CT",
    "DX": "digital radiography",
    "CR": "computed radiography",
    "PT": "PET",
    "SEG": "segmentation",
}


def _first_dicom(path: Path) -> Path | None:
    """``path`` if it is a DICOM file, the first DICOM file of a folder, else None."""
    import pydicom

    if path.is_dir():
        for child in sorted(path.iterdir()):
            if child.is_file() and not child.name.startswith(".") and pydicom.misc.is_dicom(str(child)):
                return child
        return None
    if path.is_file() and pydicom.misc.is_dicom(str(path)):
        return path
    return None


def dicom_modality(path: str | Path) -> str | None:
    """The Modality tag of a DICOM file or series folder (``""`` if absent); None for other files."""
    import pydicom

    first = _first_dicom(Path(path))
    if first is None:
        return None
    try:
        ds = pydicom.dcmread(first, stop_before_pixels=True, specific_tags=["Modality"])
    except Exception:  # an unreadable header is the reader's to report, with its own words
        return None
    return str(ds.get("Modality", "") or "").strip().upper()


def modality_problem(path: str | Path, modalities: Sequence[str]) -> str | None:
    """Why ``path`` is not of one of ``modalities`` (None when it is, or when it is not DICOM)."""
    found = dicom_modality(path)
    wanted = [m.upper() for m in modalities]
    if found is None or found in wanted:
        return None
    trained = " or ".join(f"{m} ({MODALITY_NAMES.get(m, m)})" for m in wanted)
    shown = f"{found} ({MODALITY_NAMES.get(found, found)})" if found else "missing"
    return f"DICOM Modality is {shown}, but this model was trained on {trained} images"


def _paths(value: Any) -> list[str]:
    if isinstance(value, (str, Path)):
        return [str(value)]
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, Path)) for v in value):
        return [str(v) for v in value]
    return []  # already loaded: nothing to check


class CheckModalityd(MapTransform):
    """Refuse DICOM inputs whose Modality is not one the bundle was trained on.

    Put it before ``LoadImaged``: it looks at the paths (a file, a series folder, or a list of
    channel paths) and reads one header each.

    Args:
        keys: keys holding input paths (e.g. ``"image"``).
        modality: the accepted DICOM Modality value(s), e.g. ``"MG"`` or ``["MR"]``.
        allow_missing_keys: do not raise for missing keys.

    Raises:
        ValueError: ``"<path>: DICOM Modality is CT (CT), but this model was trained on MG
            (mammography) images"``.

    Example:
        >>> CheckModalityd("image", "MG")({"image": "case.png"})["image"]
        'case.png'
    """

    def __init__(self, keys: KeysCollection, modality: str | Sequence[str], allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.modalities = [modality] if isinstance(modality, str) else list(modality)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            for path in _paths(d[key]):
                problem = modality_problem(path, self.modalities)
                if problem:
                    raise ValueError(f"{path}: {problem}")
        return d
