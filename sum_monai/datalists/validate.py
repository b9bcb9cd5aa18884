"""Check a datalist before any training: every file opens and images, masks and channels agree.

Checks, per case (``image`` may be a list of DCE channels, ``label`` a list of BUSI masks):

- every file exists and opens (:func:`sum_monai.io.read.read_image`: corrupt, truncated, empty,
  DICOM without pixels, NaN/Inf values);
- image channels and masks have the same spatial size as the first image; where both files carry
  geometry (not PNG/JPEG) also the same spacing and the same affine (orientation, origin);
- a one-file multi-channel image holds as many channels as ``meta.channels`` names;
- masks are single-channel after RGB/RGBA -> grey (colour channels must be equal) and hold only
  allowed values (binary {0, 1} or {0, 255}, or the declared label values);
- a case with ``lesion_class`` 0 (normal) has an empty mask and one with a lesion class does not;
- no group (patient, near-duplicate set) and no file appears in two splits; ``case_id`` is unique.

All problems are collected and raised together as :class:`~sum_monai.errors.DataErrors`, each
naming its file.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sum_monai.datalists.cases import LabelSpec
from sum_monai.datalists.split import SPLITS
from sum_monai.errors import DataError, DataErrors

#: Geometry tolerances: spacing relative, affine entries in mm.
SPACING_RTOL = 1e-3
AFFINE_ATOL = 1e-3


@dataclass
class ValidationReport:
    """What a successful validation saw.

    Attributes:
        cases: number of cases per split.
        files: number of files opened.
        label_values: mask values found (after RGB -> grey), sorted.
        lesions: number of cases per split whose masks mark at least one pixel.
        lesion_case_ids: the ``case_id`` of those cases (where entries have one).
    """

    cases: dict[str, int] = field(default_factory=dict)
    files: int = 0
    label_values: list[float] = field(default_factory=list)
    lesions: dict[str, int] = field(default_factory=dict)
    lesion_case_ids: set[str] = field(default_factory=set)


def load_datalist_json(path: str | Path) -> dict[str, Any]:
    """Read a datalist JSON file.

    Raises:
        DataError: missing file, invalid JSON, or no ``training`` list.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "datalist file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise DataError(path, f"not a valid JSON datalist: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("training"), list):
        raise DataError(path, "not a MONAI datalist: no 'training' list at the top level")
    return data


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _geometry_problem(ref: Any, other: Any, what: str) -> str | None:
    """Why ``other`` does not lie on the grid of ``ref`` (None when it does)."""
    if ref.spatial_shape != other.spatial_shape:
        return f"{what} size {other.spatial_shape} differs from {ref.path} size {ref.spatial_shape}"
    if not (ref.geometric and other.geometric):
        return None
    if not np.allclose(ref.spacing, other.spacing, rtol=SPACING_RTOL, atol=1e-6):
        sp = lambda s: "x".join(f"{v:.4g}" for v in s)  # noqa: E731
        return f"{what} spacing {sp(other.spacing)} mm differs from {ref.path} spacing {sp(ref.spacing)} mm"
    if not np.allclose(ref.affine, other.affine, atol=AFFINE_ATOL, rtol=0):
        return f"{what} orientation or origin (affine) differs from {ref.path}"
    return None


def _single_channel(mask: Any) -> tuple[np.ndarray | None, str | None]:
    """Mask as one channel: grey stays, RGB/RGBA become one channel if R, G and B are equal."""
    array = mask.numpy()
    if array.shape[0] == 1:
        return array[0], None
    if array.shape[0] in (3, 4) and len(array.shape) == 3:
        rgb = array[:3]
        if not (rgb == rgb[0]).all():
            return (
                None,
                "colour mask whose R, G and B channels differ: expected a grey or black-and-white mask",
            )
        return rgb[0], None
    return None, f"mask has {array.shape[0]} channels: expected one"


def _check_case(
    entry: dict[str, Any],
    base: Path,
    labels: LabelSpec,
    channels: list[str] | None,
    seen: set[float],
    modality: str | None = None,
    spatial_dims: int | None = None,
    loader: Any = None,
) -> tuple[list[DataError], int, int]:
    """Check one datalist entry; return its problems, the number of files opened and of mask pixels."""
    from sum_monai.bundle.bundle_scripts.checks import modality_problem
    from sum_monai.io.read import read_image

    errors: list[DataError] = []
    # normalised like monai.data.load_decathlon_datalist does (the JSON's folder may not exist yet)
    images = [Path(os.path.normpath(base / p)) for p in _as_list(entry.get("image"))]
    masks = [Path(os.path.normpath(base / p)) for p in _as_list(entry.get("label"))]
    where = base / str(entry.get("image", "?"))
    if not images:
        return [DataError(where, "datalist entry has no 'image'")], 0, 0
    if not masks:
        return [DataError(images[0], "datalist entry has no 'label' (mask)")], 0, 0
    opened = 0
    loaded = []
    for path in images:
        try:
            loaded.append(read_image(path, loader=loader))
            opened += 1
        except DataError as err:
            errors.append(err)
            continue
        if modality and (problem := modality_problem(path, [modality])):
            errors.append(DataError(path, problem))
        if spatial_dims and len(loaded[-1].spatial_shape) != spatial_dims:
            errors.append(
                DataError(path, f"is a {len(loaded[-1].spatial_shape)}D image; the bundle segments {spatial_dims}D images")
            )
    if loaded:
        ref = loaded[0]
        for k, img in enumerate(loaded[1:], start=2):
            problem = _geometry_problem(ref, img, f"channel {k}")
            if problem:
                errors.append(DataError(img.path, problem))
        if channels and len(images) == 1 and ref.channels != len(channels):
            errors.append(
                DataError(
                    ref.path,
                    f"holds {ref.channels} channel(s) but the datalist names {len(channels)}: {channels}",
                )
            )
    union = 0
    for path in masks:
        try:
            mask = read_image(path, loader=loader)
            opened += 1
        except DataError as err:
            errors.append(err)
            continue
        if loaded and (problem := _geometry_problem(loaded[0], mask, "mask")):
            errors.append(DataError(path, problem))
            continue
        grey, problem = _single_channel(mask)
        if grey is None:
            errors.append(DataError(path, problem or "unusable mask"))
            continue
        found = set(np.unique(grey).tolist())
        if not labels.allows(found):
            shown = ", ".join(f"{v:g}" for v in sorted(found)[:12]) + (" ..." if len(found) > 12 else "")
            errors.append(
                DataError(path, f"unexpected mask values {{{shown}}}: expected {labels.describe()}")
            )
            continue
        seen.update(found)
        union += int(np.count_nonzero(grey))
    lesion = entry.get("lesion_class")
    if lesion is not None and not errors:
        name = entry.get("class", f"lesion class {lesion}")
        if int(lesion) == 0 and union:
            errors.append(DataError(masks[0], f"class is {name} but the mask marks {union} pixels"))
        elif int(lesion) > 0 and not union:
            errors.append(DataError(masks[0], f"class is {name} but its mask(s) are empty"))
    return errors, opened, union


def _leakage(data: dict[str, Any], source: Path) -> list[DataError]:
    """Groups, files or case ids found in more than one split (or twice)."""
    errors: list[DataError] = []
    group_split: dict[str, set[str]] = {}
    file_split: dict[str, set[str]] = {}
    ids: Counter[str] = Counter()
    for split in SPLITS:
        for entry in data.get(split) or []:
            if not isinstance(entry, dict):
                continue
            if "group" in entry:
                group_split.setdefault(str(entry["group"]), set()).add(split)
            for p in _as_list(entry.get("image")):
                file_split.setdefault(p, set()).add(split)
            if "case_id" in entry:
                ids[str(entry["case_id"])] += 1
    for group, splits in sorted(group_split.items()):
        if len(splits) > 1:
            errors.append(
                DataError(source, f"group {group} appears in {' and '.join(sorted(splits))}: leakage")
            )
    for path, splits in sorted(file_split.items()):
        if len(splits) > 1:
            errors.append(
                DataError(source, f"image {path} appears in {' and '.join(sorted(splits))}: leakage")
            )
    for cid, count in sorted(ids.items()):
        if count > 1:
            errors.append(DataError(source, f"case_id {cid} is used by {count} entries"))
    return errors


def validate_datalist(
    datalist: str | Path | dict[str, Any],
    base_dir: str | Path | None = None,
    label_values: tuple[int, ...] | None = None,
    progress: bool = True,
    name: str | None = None,
    modality: str | None = None,
    spatial_dims: int | None = None,
    loader: Any = None,
) -> ValidationReport:
    """Check every case of a datalist; raise all problems together.

    Args:
        datalist: path of a datalist JSON, or the datalist itself (then give ``base_dir``).
        base_dir: folder the paths are relative to (default: the JSON's folder).
        label_values: allowed label values; default from ``meta.labels`` (binary if absent).
        progress: show a tqdm progress bar.
        name: what to call the datalist in messages (default: its path, or ``base_dir``).
        modality: the DICOM Modality images must have (the bundle's, e.g. ``"MG"``); non-DICOM
            files pass. None: not checked.
        spatial_dims: the dimensions images must have (2 or 3, the bundle's). None: not checked.
        loader: open files with a bundle's own loading
            (:func:`sum_monai.bundle.readers.bundle_loader`) instead of the package's readers.

    Returns:
        counts of what was checked.

    Raises:
        DataError: the datalist itself cannot be read.
        DataErrors: every problem found, each naming its file.

    Example:
        >>> validate_datalist("data/busi/datalist.json").cases   # doctest: +SKIP
        {'training': 402, 'validation': 87, 'test': 86}
    """
    from tqdm import tqdm

    if isinstance(datalist, dict):
        data, source = datalist, Path(name or base_dir or ".")
        base = Path(base_dir or ".")
    else:
        source = Path(datalist)
        data = load_datalist_json(source)
        base = Path(base_dir) if base_dir is not None else source.parent
    meta = data.get("meta") or {}
    labels = (
        LabelSpec(tuple(label_values))
        if label_values is not None
        else LabelSpec.from_meta(meta.get("labels"))
    )
    channels = meta.get("channels")
    report = ValidationReport()
    errors = _leakage(data, source)
    entries = [(split, e) for split in SPLITS for e in (data.get(split) or [])]
    seen: set[float] = set()
    for split, entry in tqdm(entries, desc="validate", unit="case", disable=not progress):
        report.cases[split] = report.cases.get(split, 0) + 1
        if not isinstance(entry, dict):
            errors.append(DataError(source, f"{split} entry is not an object: {entry!r:.60}"))
            continue
        found, opened, union = _check_case(entry, base, labels, channels, seen, modality, spatial_dims, loader)
        errors.extend(found)
        report.files += opened
        report.lesions.setdefault(split, 0)
        if union:
            report.lesions[split] += 1
            if entry.get("case_id"):
                report.lesion_case_ids.add(str(entry["case_id"]))
    if not entries:
        errors.append(DataError(source, "datalist holds no case"))
    if errors:
        raise DataErrors(errors, f"datalist {source}")
    report.label_values = sorted(seen)
    return report
