"""Decathlon / nnU-Net layout for MRI: ``imagesTr``, ``labelsTr`` and ``dataset.json``.

Three ways to store the channels of a case (DCE: pre-contrast, first post-contrast), found in this
order for each label ``labelsTr/<case>.nii.gz``:

::

    DIR/dicom/<case>/<channel name>/*.dcm       one DICOM series folder per channel
    DIR/dicom/<case>/<any series folders>/       a DCE study as the scanner exports it: the dynamic
                                                 series found and its phases picked by the MRI
                                                 bundle's rules (sum_monai.io.study), channel 0 the
                                                 pre-contrast, channel k the k-th post-contrast phase
    DIR/imagesTr/<case>_0000.nii.gz, _0001 ...   one file per channel (nnU-Net v2)
    DIR/imagesTr/<case>.nii.gz                   one 4D file, channels last (MSD)

``dataset.json`` names the channels (``channel_names`` as nnU-Net v2 or ``modality`` as MSD:
``{"0": "pre", "1": "post1"}``) and the labels (``{"background": 0, "tumour": 1}`` or
``{"0": "background", "1": "tumour"}``); the label values become the values masks may hold.
A case's ``image`` is the list of channel paths in channel order, or the one 4D file.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sum_monai.datalists.cases import Case, LabelSpec, Scan, no_cases, raise_all, rel, require_folder
from sum_monai.datalists.paired import _compile, regex_value
from sum_monai.errors import DataError
from sum_monai.io.read import image_suffix

if TYPE_CHECKING:
    from sum_monai.io.study import StudyFinder

log = logging.getLogger(__name__)

EXAMPLE = "labelsTr/case_001.nii.gz with imagesTr/case_001_0000.nii.gz (and dataset.json)"


def _ordered(mapping: dict[str, Any]) -> list[Any]:
    return [mapping[k] for k in sorted(mapping, key=lambda k: int(k))]


def read_dataset_json(path: Path) -> tuple[list[str], tuple[int, ...], str | None]:
    """Channel names in order, declared label values and file ending from ``dataset.json``.

    Raises:
        DataError: missing or invalid file, no channel names, labels that are not integers.
    """
    if not path.is_file():
        raise DataError(path, f"not found: the msd layout expects {path.parent / EXAMPLE}")
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
        channels = spec.get("channel_names") or spec.get("modality")
        if not isinstance(channels, dict) or not channels:
            raise ValueError("no 'channel_names' (nnU-Net v2) or 'modality' (MSD) block naming the channels")
        names = [str(n) for n in _ordered(channels)]
        labels = spec.get("labels")
        if not isinstance(labels, dict) or not labels:
            raise ValueError("no 'labels' block declaring the label values")
        if all(str(k).lstrip("-").isdigit() for k in labels):  # MSD: {"0": "background"}
            values = {int(k) for k in labels}
        else:  # nnU-Net v2: {"background": 0}; region lists give their member values
            values = set()
            for v in labels.values():
                values.update(int(x) for x in (v if isinstance(v, list) else [v]))
    except (ValueError, TypeError, AttributeError) as err:
        raise DataError(path, f"not a usable dataset.json: {err}") from err
    return names, tuple(sorted(values)), spec.get("file_ending")


def _dce_channels(n: int) -> tuple[str, ...]:
    """DCE channel names of ``n`` channels: ``pre``, ``post1``, ``post2`` ..."""
    return ("pre", *(f"post{k}" for k in range(1, n)))


def _studies() -> StudyFinder:
    """The MRI bundle's study rules (imported lazily: the bundle scripts import MONAI)."""
    from sum_monai.io.study import StudyFinder

    return StudyFinder.default()


def _case_name(path: Path) -> str:
    suffix = image_suffix(path)
    return path.name[: -len(suffix)] if suffix else path.stem


def scan_msd(root: str | Path, group_regex: str | None = None) -> Scan:
    """Find the labelled cases of a Decathlon-style folder.

    Args:
        root: folder with ``dataset.json``, ``labelsTr/`` and ``imagesTr/`` (or ``dicom/``).
        group_regex: gives the patient group from the case name (e.g. ``"^(\\w+)_visit"``).

    Raises:
        DataError: missing dataset.json / labelsTr, or no labelled case.
        DataErrors: cases missing a channel or their image, all listed.
    """
    root = Path(root)
    require_folder(root, "msd", EXAMPLE)
    channels, values, ending = read_dataset_json(root / "dataset.json")
    labels_root = root / "labelsTr"
    if not labels_root.is_dir():
        raise DataError(labels_root, f"folder not found: the msd layout expects {root / EXAMPLE}")
    group_rx = _compile(group_regex, "--group-regex")
    label_files = sorted(
        p
        for p in labels_root.iterdir()
        if not p.name.startswith(".") and image_suffix(p) and (ending is None or p.name.endswith(ending))
    )
    cases: list[Case] = []
    errors: list[DataError] = []
    for label in label_files:
        name, suffix = _case_name(label), image_suffix(label)
        dicom = root / "dicom" / name
        per_channel = [root / "imagesTr" / f"{name}_{i:04d}{suffix}" for i in range(len(channels))]
        single = root / "imagesTr" / f"{name}{suffix}"
        if dicom.is_dir():
            images = [dicom / ch for ch in channels]
            if not any(p.is_dir() for p in images) and _studies().is_study(dicom):
                try:
                    images = _studies().channel_folders(dicom, _dce_channels(len(channels)))
                except DataError as err:
                    errors.append(err)
                    continue
            missing = [p for p in images if not p.is_dir()]
        elif per_channel[0].is_file():
            images = per_channel
            missing = [p for p in images if not p.is_file()]
        elif single.is_file():
            images, missing = [single], []
        else:
            errors.append(
                DataError(
                    label,
                    f"no image for this label: expected {per_channel[0]}, {single} or {dicom}/<channel>/",
                )
            )
            continue
        if missing:
            errors.extend(
                DataError(p, f"channel of case missing (dataset.json names {channels})") for p in missing
            )
            continue
        patient = None
        if group_rx:
            patient = regex_value(group_rx, name, "group")
            if patient is None:
                errors.append(DataError(label, f"case name does not match --group-regex '{group_regex}'"))
                continue
        image: str | list[str] = rel(images[0], root) if len(images) == 1 else [rel(p, root) for p in images]
        cases.append(Case(key=rel(images[0], root), image=image, label=rel(label, root), patient=patient))
    raise_all(errors, f"msd folder {root}")
    if not cases:
        raise no_cases(root, "msd", EXAMPLE)
    images_tr = root / "imagesTr"
    if images_tr.is_dir():
        labelled = {_case_name(root / c.label) for c in cases}
        unlabelled = {
            re.sub(r"_\d{4}$", "", _case_name(p)) for p in images_tr.iterdir() if image_suffix(p)
        } - labelled
        if unlabelled:
            log.warning(
                "%d image case(s) in imagesTr have no label in labelsTr and are left out", len(unlabelled)
            )
    return Scan(layout="msd", root=root, cases=cases, labels=LabelSpec(values), channels=channels)
