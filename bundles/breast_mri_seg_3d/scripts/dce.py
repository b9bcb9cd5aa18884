"""DCE-MRI studies as scanners deliver them: find the dynamic series, order its phases, pick channels.

A breast DCE exam leaves the scanner (or PACS, or TCIA) as one *study folder* holding many series:
a localiser, T2, the dynamic series (``ax dyn pre``, ``ax dyn 1st pass`` ... ``4th pass``), derived
subtractions, a T1 TSE post-contrast, sagittal reformats, sometimes a DICOM SEG. The series may
sit in one sub-folder each or all in one flat folder; some scanners put every dynamic phase in
ONE series (phases told apart by TemporalPositionIdentifier / TriggerTime / AcquisitionTime).

:func:`select_phases` turns such a folder into the phases the network needs, from DICOM tags only
(headers are read, pixels are not):

1. **Stacks.** Files are grouped by SeriesInstanceUID; a series whose slice positions repeat is
   split into one stack per temporal position (TemporalPositionIdentifier, else TriggerTime,
   else AcquisitionTime / ContentTime).
2. **Skipped, with a note.** DICOM SEG and other non-image objects (Modality SEG / SR / PR ...),
   non-MR images, localisers (ImageType LOCALIZER, slices in several planes, or fewer than
   :data:`MIN_SLICES` slices), derived images (ImageType DERIVED / SECONDARY: subtractions,
   MIPs), multi-frame objects, and every stack outside the dynamic group (other planes, other
   matrices such as a T2 or a T1 TSE post-contrast).
3. **The dynamic group** is the largest set of stacks sharing one geometry (orientation, matrix,
   pixel spacing, slice positions); series descriptions matching :data:`DYNAMIC_HINT` only break
   ties.
4. **Order.** By the first of AcquisitionTime, ContentTime, TriggerTime that every phase carries
   with distinct values, else by SeriesNumber (then TemporalPositionIdentifier). A SeriesNumber
   order that disagrees with the times is noted.
5. **Pre / post.** A phase acquired before ContrastBolusStartTime is pre-contrast, one acquired
   at or after it post-contrast; without a start time, ContrastBolusAgent marks post-contrast
   phases; without any contrast tag, the earliest phase is taken as pre-contrast, and series
   descriptions (:data:`PRE_HINT`, :data:`POST_HINT`) that disagree are noted (they are a hint,
   never the evidence). The pre-contrast channel is the last pre-contrast phase; ``post1`` the
   first post-contrast one.
6. **Channels** are named ``pre``, ``post1``, ``post2`` ..., ``last`` (the last post-contrast
   phase): any phase count works, and a bundle may ask for any channels. The chosen phases are
   checked to share one geometry.

A study without a usable pre/post pair raises :class:`StudyError` naming the folder and listing
every series found and why it was not used.

:class:`DCEStudyReader` is MONAI's ``ITKReader`` that also reads a study folder (or a single
multi-phase series folder) as the chosen phases stacked as channels; every other input is read
exactly as ``ITKReader`` reads it. Only pydicom, ITK, numpy and MONAI are used, so the bundle
reads studies without sum_monai.

Example:
    >>> sel = select_phases("STUDY", ("pre", "post1"))            # doctest: +SKIP
    >>> [s.label for s in sel.used], sel.ordered_by               # doctest: +SKIP
    (["series 3 'ax dyn pre'", "series 4 'ax dyn 1st pass'"], 'AcquisitionTime')
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from monai.data import ITKReader
from monai.utils import ensure_tuple

logger = logging.getLogger(__name__)

__all__ = [
    "DCEStudyReader",
    "Stack",
    "StudyError",
    "StudySelection",
    "is_study",
    "list_inputs",
    "scan_study",
    "select_phases",
]

#: A volume needs at least this many slices (localisers have 1-3 per plane).
MIN_SLICES = 4
#: Series descriptions that look like a dynamic series (tie-breaker only).
DYNAMIC_HINT = re.compile(r"dyn|dce|dynamic|vibrant|thrive|twist|tricks|pass|phase|\bph\s*\d", re.I)
#: Descriptions that look pre-contrast / post-contrast (a hint: disagreements with the order are noted).
PRE_HINT = re.compile(r"\bpre\b|pre[-_ ]?contrast|native|nativ|non[-_ ]?contrast|\bw/?o\b|\bmask\b", re.I)
POST_HINT = re.compile(r"post|pass|\+\s*c\b|\bgd\b|contrast|\bph(ase)?\s*[2-9]", re.I)
#: DICOM Segmentation Storage.
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
_TAGS = [
    "SOPClassUID", "Modality", "SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "ImageType",
    "ImageOrientationPatient", "ImagePositionPatient", "Rows", "Columns", "PixelSpacing", "NumberOfFrames",
    "AcquisitionTime", "ContentTime", "TriggerTime", "TemporalPositionIdentifier", "ContrastBolusAgent",
    "ContrastBolusStartTime", "InstanceNumber", "StudyInstanceUID",
]  # fmt: skip
_PLANES = {0: "sagittal", 1: "coronal", 2: "axial"}


class StudyError(ValueError):
    """A study folder without a usable set of DCE phases (the message names the folder)."""


def _seconds(value: Any) -> float | None:
    """DICOM TM (``HHMMSS.FFFFFF`` or ``HH:MM:SS``) as seconds after midnight, else None."""
    text = str(value or "").strip().replace(":", "")
    if not re.fullmatch(r"\d{2,6}(\.\d*)?", text):
        return None
    whole, _, frac = text.partition(".")
    whole = whole.ljust(6, "0")
    return int(whole[:2]) * 3600 + int(whole[2:4]) * 60 + int(whole[4:6]) + float("0." + (frac or "0"))


def _is_dicom_file(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


@dataclass
class Stack:
    """One 3D stack of slices: a series, or one temporal position of a multi-phase series.

    Attributes:
        series_uid: SeriesInstanceUID; study_uid: StudyInstanceUID.
        series_number: SeriesNumber (None if absent).
        description: SeriesDescription ("" if absent).
        modality: Modality.
        image_type: ImageType values, upper case.
        files: the slice files, ordered along the slice normal.
        orientation: ImageOrientationPatient (6 values) of the first slice; None if absent.
        positions: slice positions along the normal (mm), ascending.
        rows / columns / spacing: matrix and PixelSpacing.
        times: AcquisitionTime / ContentTime (s after midnight), TriggerTime (ms) of the stack.
        temporal_position: TemporalPositionIdentifier.
        contrast_agent: ContrastBolusAgent ("" if absent).
        bolus_start: ContrastBolusStartTime (s after midnight) or None.
        planes: number of distinct slice orientations (3 for a 3-plane localiser).
        frames: NumberOfFrames (1 for classic single-frame images).
        part: 1-based index of this stack within a series split by temporal position (0: whole series).
        role: ``pre`` / ``post`` once classified; ``why``: the reason (or why it was skipped).
    """

    series_uid: str
    study_uid: str
    series_number: int | None
    description: str
    modality: str
    sop_class: str
    image_type: tuple[str, ...]
    files: list[Path]
    orientation: tuple[float, ...] | None
    positions: list[float]
    rows: int
    columns: int
    spacing: tuple[float, ...]
    times: dict[str, float]
    temporal_position: int | None
    contrast_agent: str
    bolus_start: float | None
    planes: int = 1
    frames: int = 1
    part: int = 0
    role: str = ""
    why: str = ""

    @property
    def label(self) -> str:
        """How the stack is named in notes and errors: ``series 4 'ax dyn 1st pass'``."""
        number = "?" if self.series_number is None else str(self.series_number)
        text = f"series {number} '{self.description}'"
        return f"{text} phase {self.part}" if self.part else text

    @property
    def plane(self) -> str:
        """``axial``, ``coronal``, ``sagittal`` (from the slice normal) or ``oblique``."""
        if self.orientation is None:
            return "unknown plane"
        normal = np.abs(_normal(self.orientation))
        return _PLANES[int(np.argmax(normal))] if normal.max() > 0.9 else "oblique"

    def geometry(self) -> tuple:
        """What phases of one dynamic series share (rounded to 0.01 mm / 1e-3)."""
        orient = tuple(round(v, 3) for v in self.orientation or ())
        spacing = tuple(round(v, 3) for v in self.spacing)
        first = round(self.positions[0], 2) if self.positions else None
        last = round(self.positions[-1], 2) if self.positions else None
        return (orient, self.rows, self.columns, spacing, len(self.files), first, last)

    def describe(self, root: Path | None = None) -> dict[str, Any]:
        """JSON-able summary (no patient identifiers: numbers, descriptions, times, folders)."""
        folder = _common_folder(self.files)
        try:
            rel = folder.relative_to(root).as_posix() if root is not None else folder.as_posix()
        except ValueError:
            rel = folder.as_posix()
        out: dict[str, Any] = {
            "series_number": self.series_number,
            "description": self.description,
            "slices": len(self.files),
            "folder": rel or ".",
        }
        if self.part:
            out["temporal_position"] = self.part
        if self.role:
            out["role"] = self.role
        if self.why:
            out["why"] = self.why
        return out


def _normal(orientation: Sequence[float]) -> np.ndarray:
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:6], float)
    n = np.cross(row, col)
    return n / (np.linalg.norm(n) or 1.0)


def _common_folder(files: Sequence[Path]) -> Path:
    return Path(os.path.commonpath([str(f.parent) for f in files])) if files else Path(".")


def _headers(folder: Path) -> list[tuple[Path, Any]]:
    import pydicom

    out = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or any(p.startswith(".") for p in path.relative_to(folder).parts):
            continue
        if not _is_dicom_file(path):
            continue
        try:
            out.append((path, pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_TAGS)))
        except Exception:  # an unreadable file is left out (logged at debug level)
            logger.debug("unreadable DICOM header: %s", path)
    return out


def _stack_from(series_uid: str, items: list[tuple[Path, Any]], part: int = 0) -> Stack:
    ds0 = items[0][1]
    orientations = {
        tuple(round(float(v), 3) for v in ds.ImageOrientationPatient)
        for _, ds in items
        if ds.get("ImageOrientationPatient") is not None
    }
    orientation = tuple(float(v) for v in ds0.ImageOrientationPatient) if ds0.get("ImageOrientationPatient") else None
    positions, files = [], []
    if orientation is not None and all(ds.get("ImagePositionPatient") is not None for _, ds in items):
        normal = _normal(orientation)
        keyed = sorted(
            ((float(np.dot(normal, np.asarray(ds.ImagePositionPatient, float))), p) for p, ds in items),
            key=lambda t: (t[0], str(t[1])),
        )
        positions = [k for k, _ in keyed]
        files = [p for _, p in keyed]
    else:
        files = [p for p, _ in items]
    times: dict[str, float] = {}
    for tag in ("AcquisitionTime", "ContentTime"):
        values = [s for s in (_seconds(ds.get(tag)) for _, ds in items) if s is not None]
        if values:
            times[tag] = min(values)
    triggers = [float(ds.TriggerTime) for _, ds in items if ds.get("TriggerTime") not in (None, "")]
    if triggers:
        times["TriggerTime"] = min(triggers)
    agents = [str(ds.get("ContrastBolusAgent") or "").strip() for _, ds in items]
    starts = [s for s in (_seconds(ds.get("ContrastBolusStartTime")) for _, ds in items) if s is not None]
    tpi = ds0.get("TemporalPositionIdentifier")
    spacing = ds0.get("PixelSpacing")
    return Stack(
        series_uid=series_uid,
        study_uid=str(ds0.get("StudyInstanceUID") or ""),
        series_number=int(ds0.SeriesNumber) if ds0.get("SeriesNumber") not in (None, "") else None,
        description=str(ds0.get("SeriesDescription") or "").strip(),
        modality=str(ds0.get("Modality") or "").upper(),
        sop_class=str(ds0.get("SOPClassUID") or ""),
        image_type=tuple(str(v).upper() for v in ensure_tuple(ds0.get("ImageType") or ())),
        files=files,
        orientation=orientation,
        positions=positions,
        rows=int(ds0.get("Rows") or 0),
        columns=int(ds0.get("Columns") or 0),
        spacing=tuple(float(v) for v in spacing) if spacing else (),
        times=times,
        temporal_position=int(tpi) if tpi not in (None, "") else None,
        contrast_agent=next((a for a in agents if a), ""),
        bolus_start=min(starts) if starts else None,
        planes=max(1, len(orientations)),
        frames=int(ds0.get("NumberOfFrames") or 1),
        part=part,
    )


def _split_series(series_uid: str, items: list[tuple[Path, Any]]) -> list[Stack]:
    """One stack per temporal position when slice positions repeat inside a series."""
    positions = [
        tuple(round(float(v), 2) for v in ds.ImagePositionPatient) for _, ds in items if ds.get("ImagePositionPatient")
    ]
    if len(positions) < 2 or len(set(positions)) == len(positions):
        return [_stack_from(series_uid, items)]
    for tag in ("TemporalPositionIdentifier", "TriggerTime", "AcquisitionTime", "ContentTime"):
        values = [ds.get(tag) for _, ds in items]
        if all(v not in (None, "") for v in values) and len({str(v) for v in values}) > 1:
            key = (lambda v: float(v)) if tag in ("TemporalPositionIdentifier", "TriggerTime") else _seconds
            groups: dict[float, list[tuple[Path, Any]]] = {}
            for item, value in zip(items, values, strict=True):
                groups.setdefault(key(value), []).append(item)
            return [_stack_from(series_uid, groups[k], part=i) for i, k in enumerate(sorted(groups), start=1)]
    return [_stack_from(series_uid, items)]  # repeated positions, nothing to tell them apart


def scan_study(folder: str | Path) -> list[Stack]:
    """Every stack of the DICOM files in ``folder`` (recursively), in SeriesNumber order.

    The headers of a folder are read once: finding the cases, picking the phases and writing the
    DICOM SEG each ask again, and a 2 x 160-slice study took 3 s per scan; a folder whose files
    (names, sizes, modification times) changed is scanned again.

    Raises:
        StudyError: no DICOM file in the folder.
    """
    root = Path(folder).resolve()
    return [copy.copy(s) for s in _scan(str(root), _signature(root))]  # copies: phase selection annotates its stacks


def _signature(root: Path) -> tuple[tuple[str, int, int], ...]:
    """(path, mtime, size) of every file below ``root``: one ``stat`` per entry."""
    files = []
    for path in sorted(root.rglob("*")):
        try:
            info = path.stat()
        except OSError:  # removed while listing
            continue
        if stat.S_ISREG(info.st_mode):
            files.append((str(path), info.st_mtime_ns, info.st_size))
    return tuple(files)


@functools.lru_cache(maxsize=16)
def _scan(folder: str, files: tuple[tuple[str, int, int], ...]) -> tuple[Stack, ...]:
    """:func:`scan_study` of ``folder`` whose files are ``files`` (the cache key)."""
    root = Path(folder)
    items = _headers(root)
    if not items:
        raise StudyError(f"{root}: no DICOM files in the folder or below it")
    series: dict[str, list[tuple[Path, Any]]] = {}
    for path, ds in items:
        series.setdefault(str(ds.get("SeriesInstanceUID") or _common_folder([path])), []).append((path, ds))
    stacks = [s for uid, files in series.items() for s in _split_series(uid, files)]
    return tuple(sorted(stacks, key=lambda s: (s.series_number is None, s.series_number or 0, s.part, s.label)))


def is_study(folder: str | Path) -> bool:
    """Whether ``folder`` holds one DICOM study with more than one stack (series or temporal position).

    A folder holding one ordinary series is not a study (``ITKReader`` reads it as it is), nor is
    a folder holding several studies (e.g. one sub-folder per study).
    """
    path = Path(folder)
    if not path.is_dir():
        return False
    try:
        stacks = scan_study(path)
    except StudyError:
        return False
    return len(stacks) > 1 and len({s.study_uid for s in stacks}) == 1


def _skip_reason(stack: Stack) -> str:
    """Why a stack can never be a DCE phase ("" if it might be one)."""
    if stack.modality == "SEG" or stack.sop_class == SEG_SOP_CLASS:
        return "DICOM SEG (a segmentation, not an image)"
    if stack.modality and stack.modality != "MR":
        return f"not an MR image (Modality {stack.modality})"
    if stack.frames > 1:
        return f"multi-frame object ({stack.frames} frames): enhanced multi-frame MR is not read here"
    if stack.orientation is None or not stack.positions or not stack.rows:
        return "no image geometry (ImageOrientationPatient / ImagePositionPatient / Rows missing)"
    if "LOCALIZER" in stack.image_type or stack.planes > 1:
        return "localiser" + (f" (slices in {stack.planes} planes)" if stack.planes > 1 else " (ImageType LOCALIZER)")
    if len(stack.files) < MIN_SLICES:
        return f"localiser or single slices ({len(stack.files)} slice(s), fewer than {MIN_SLICES})"
    derived = [
        t
        for t in ("DERIVED", "SECONDARY", "SUB", "SUBTRACTION", "MIP", "MPR", "PROJECTION IMAGE")
        if t in stack.image_type
    ]
    if derived:
        return f"derived image (ImageType {'/'.join(derived)}): a subtraction, MIP or reformat, not an acquired phase"
    return ""


def _ordered(phases: list[Stack], notes: list[str]) -> tuple[list[Stack], str]:
    for tag in ("AcquisitionTime", "ContentTime", "TriggerTime"):
        values = [p.times.get(tag) for p in phases]
        if all(v is not None for v in values) and len(set(values)) == len(values):
            out = sorted(phases, key=lambda p: (p.times[tag], p.series_number or 0, p.part))
            numbers = [p.series_number for p in out]
            if None not in numbers and len(set(numbers)) == len(numbers) and numbers != sorted(numbers):
                notes.append(f"SeriesNumber order {numbers} disagrees with {tag}; {tag} used")
            return out, tag
    numbers = [p.series_number for p in phases]
    if None not in numbers and len(set((p.series_number, p.temporal_position or p.part) for p in phases)) == len(
        phases
    ):
        notes.append("no acquisition / content / trigger times that order the phases: SeriesNumber used")
        return sorted(phases, key=lambda p: (p.series_number, p.temporal_position or p.part)), "SeriesNumber"
    raise StudyError("the dynamic phases carry neither distinct times nor distinct series numbers")


def _roles(phases: list[Stack], notes: list[str]) -> str:
    """Mark each ordered phase ``pre`` or ``post``; returns the evidence used."""
    start = min((p.bolus_start for p in phases if p.bolus_start is not None), default=None)
    tag = next((t for t in ("AcquisitionTime", "ContentTime") if all(t in p.times for p in phases)), None)
    if start is not None and tag is not None:
        for p in phases:
            before = p.times[tag] < start
            p.role = "pre" if before else "post"
            p.why = f"{tag} {'before' if before else 'at or after'} ContrastBolusStartTime"
        return "ContrastBolusStartTime"
    if any(p.contrast_agent for p in phases):
        for p in phases:
            p.role = "post" if p.contrast_agent else "pre"
            p.why = "ContrastBolusAgent " + ("set" if p.contrast_agent else "absent")
        roles = [p.role for p in phases]
        if "post" in roles and "pre" in roles[roles.index("post") :]:
            notes.append("a phase without ContrastBolusAgent follows a post-contrast phase")
        return "ContrastBolusAgent"
    for i, p in enumerate(phases):
        p.role = "pre" if i == 0 else "post"
        p.why = "no contrast tags: " + ("the earliest phase" if i == 0 else "after the earliest phase")
    notes.append(
        "no contrast tags (ContrastBolusAgent / ContrastBolusStartTime): the earliest phase is taken as pre-contrast"
    )
    said_pre = [p.label for p in phases if PRE_HINT.search(p.description)]
    said_post = [p.label for p in phases if POST_HINT.search(p.description) and not PRE_HINT.search(p.description)]
    if (said_pre and said_pre != [phases[0].label]) or phases[0].label in said_post:
        notes.append(
            f"series descriptions disagree with the acquisition order (described pre-contrast: {said_pre or 'none'})"
        )
    return "order"


@dataclass
class StudySelection:
    """The outcome of :func:`select_phases`.

    Attributes:
        folder: the study folder.
        channels: the channel names asked for (``pre``, ``post1`` ...).
        used: the stack of each channel, in channel order.
        phases: every dynamic phase in time order (roles and reasons set).
        skipped: stacks that are not dynamic phases (``why`` says why).
        ordered_by: the tag that ordered the phases; ``contrast_from``: what told pre from post.
        notes: anything surprising (disagreeing tags, missing times ...).
    """

    folder: Path
    channels: tuple[str, ...]
    used: list[Stack]
    phases: list[Stack]
    skipped: list[Stack]
    ordered_by: str
    contrast_from: str
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        """JSON-able account of which series were used and why (for logs and per-case JSON)."""
        tag = self.ordered_by if self.ordered_by in ("AcquisitionTime", "ContentTime", "TriggerTime") else None
        t0 = self.phases[0].times.get(tag) if tag else None

        def phase(p: Stack) -> dict[str, Any]:
            d = p.describe(self.folder)
            if tag and t0 is not None and tag in p.times:
                scale = 1000.0 if tag == "TriggerTime" else 1.0
                d["time_s"] = round((p.times[tag] - t0) / scale, 3)
            return d

        return {
            "study": self.folder.name,
            "channels": {c: phase(s) for c, s in zip(self.channels, self.used, strict=True)},
            "dynamic_phases": [phase(p) for p in self.phases],
            "ordered_by": self.ordered_by,
            "contrast_from": self.contrast_from,
            "skipped": [p.describe(self.folder) for p in self.skipped],
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        """One line for the log."""
        used = ", ".join(f"{c}={s.label}" for c, s in zip(self.channels, self.used, strict=True))
        return (
            f"{self.folder}: {len(self.phases)} dynamic phase(s) ordered by {self.ordered_by}, contrast from "
            f"{self.contrast_from}; using {used}; skipped {len(self.skipped)} other stack(s)"
        )


def _found(stacks: Sequence[Stack]) -> str:
    parts = []
    for s in stacks:
        what = f"{s.label}: {len(s.files)} slice(s), {s.plane}"
        parts.append(what + (f" [{s.why}]" if s.why else ""))
    return "; ".join(parts) if parts else "nothing"


def _channel_index(name: str, n_pre: int, n_post: int) -> int | None:
    """Index into pre + post phases of a channel name, None when the study lacks it."""
    name = name.lower()
    if name == "pre":
        return n_pre - 1 if n_pre else None
    if name == "last":
        return n_pre + n_post - 1 if n_post else None
    m = re.fullmatch(r"post(\d+)", name)
    if not m or int(m[1]) < 1:
        raise ValueError(f"unknown DCE channel {name!r}: use 'pre', 'post1', 'post2', ... or 'last'")
    k = int(m[1])
    return n_pre + k - 1 if k <= n_post else None


def select_phases(folder: str | Path, channels: Sequence[str] = ("pre", "post1")) -> StudySelection:
    """Find the dynamic series of a study folder and pick the phases named by ``channels``.

    Args:
        folder: the study folder (series in sub-folders or all in one folder).
        channels: channel names in network order: ``pre``, ``post1``, ``post2`` ..., ``last``.

    Returns:
        The selection (stacks per channel, every phase with its role, skipped stacks, notes).

    Raises:
        StudyError: no DICOM files, no dynamic series, no pre/post pair, fewer post-contrast
            phases than ``channels`` need, or chosen phases with different geometry; the message
            names the folder and lists what was found.
    """
    root = Path(folder)
    channels = tuple(str(c) for c in channels)
    stacks = scan_study(root)
    studies = sorted({s.study_uid for s in stacks})
    if len(studies) > 1:
        raise StudyError(f"{root}: holds {len(studies)} studies (StudyInstanceUID); give one study folder at a time")
    notes: list[str] = []
    candidates = []
    for s in stacks:
        s.why = _skip_reason(s)
        if not s.why:
            candidates.append(s)
    groups: dict[tuple, list[Stack]] = {}
    for s in candidates:
        groups.setdefault(s.geometry(), []).append(s)
    ranked = sorted(
        groups.values(),
        key=lambda g: (
            len(g),
            sum(bool(DYNAMIC_HINT.search(s.description)) for s in g),
            -min(s.series_number or 0 for s in g),
        ),
        reverse=True,
    )
    if not ranked or len(ranked[0]) < 2:
        for s in candidates:
            s.why = "the only stack of its geometry: no second phase to pair it with"
        raise StudyError(
            f"{root}: no dynamic series with a pre-contrast and a post-contrast phase (at least two image stacks "
            f"sharing one geometry); found {len(stacks)} stack(s): {_found(stacks)}"
        )
    dynamic = ranked[0]
    reference = dynamic[0]
    for s in candidates:
        if s in dynamic:
            continue
        if s.plane != reference.plane:
            s.why = f"other plane ({s.plane}; the dynamic series is {reference.plane})"
        else:
            s.why = (
                f"not part of the dynamic series (geometry differs: {len(s.files)} slices of {s.columns}x{s.rows} "
                f"at {'x'.join(f'{v:g}' for v in s.spacing)} mm; dynamic: {len(reference.files)} of "
                f"{reference.columns}x{reference.rows} at {'x'.join(f'{v:g}' for v in reference.spacing)} mm)"
            )
    try:
        phases, ordered_by = _ordered(dynamic, notes)
    except StudyError as err:
        raise StudyError(f"{root}: {err}; found: {_found(dynamic)}") from None
    contrast_from = _roles(phases, notes)
    pre = [p for p in phases if p.role == "pre"]
    post = [p for p in phases if p.role == "post"]
    skipped = [s for s in stacks if s not in dynamic]
    ordered = pre + post
    used = []
    for name in channels:
        index = _channel_index(name, len(pre), len(post))
        if index is None:
            raise StudyError(
                f"{root}: no '{name}' phase: the dynamic series has {len(pre)} pre-contrast and {len(post)} "
                f"post-contrast phase(s) (contrast from {contrast_from}): {_found(phases)}; "
                f"other stacks: {_found(skipped)}"
            )
        used.append(ordered[index])
    if len(pre) > 1:
        notes.append(f"{len(pre)} pre-contrast phases: the last one before contrast is used")
    geo = {s.geometry() for s in used}
    if len(geo) != 1:
        raise StudyError(f"{root}: the chosen phases disagree in geometry: {_found(used)}")
    for name, s in zip(channels, used, strict=True):
        s.why = f"{name}: {s.why}" if not s.why.startswith(name) else s.why
    return StudySelection(root, channels, used, phases, skipped, ordered_by, contrast_from, notes)


def list_inputs(dataset_dir: str | Path) -> list[Any]:
    """The inference inputs of ``dataset_dir`` (``inference.json``'s ``datalist``), one per case.

    - a sub-folder that is a DCE study (:func:`is_study`) is one input, read by :class:`DCEStudyReader`;
    - any other sub-folder gives the sorted list of its entries (the channel files or series folders
      ``pre/``, ``post1/`` of a case);
    - image files directly in ``dataset_dir`` named in the nnU-Net way (``<case>_0000.nii.gz``,
      ``<case>_0001.nii.gz``) are grouped per case, channels in order; any other image file
      (a 4D NIfTI, an NRRD) is one input.
    """
    root = Path(dataset_dir)
    out: list[Any] = []
    for d in sorted(p for p in root.glob("*") if p.is_dir()):
        out.append(str(d) if is_study(d) else sorted(str(p) for p in d.glob("*")))
    cases: dict[str, list[str]] = {}
    for f in sorted(p for p in root.glob("*") if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES)):
        found = CHANNEL_FILE.match(f.name)
        cases.setdefault(found.group(1) if found else f.name, []).append(str(f))
    out += [
        files if len(files) > 1 or CHANNEL_FILE.match(Path(files[0]).name) else files[0] for files in cases.values()
    ]
    return out


#: File endings of images read per case (``list_inputs``).
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
#: An nnU-Net channel file: ``<case>_<4-digit channel>.<ext>``.
CHANNEL_FILE = re.compile(r"^(.+)_(\d{4})\.(nii\.gz|nii|nrrd|nhdr|mha|mhd)$", re.IGNORECASE)


class DCEStudyReader(ITKReader):
    """MONAI's ``ITKReader`` that also reads a DCE study folder as its chosen phases.

    A folder holding several series (or one series with several temporal positions) is resolved
    with :func:`select_phases`; the stacks named by ``channels`` are read with ITK (slices
    ordered along the normal) and returned as a list, which ``get_data`` stacks as channels after
    MONAI checks that their affines and shapes agree. Everything else (NIfTI, NRRD, one DICOM
    series folder, a list of them) is read exactly as by ``ITKReader``. Why not ITKReader alone:
    it reads only the first series of a folder and knows nothing of contrast phases.

    The selection of the last study read is kept in :attr:`last_selection` and added to the
    image's metadata as ``dce_study`` (a JSON string), and logged.

    Args:
        channels: DCE channel names in network order (see :func:`select_phases`).
        kwargs: passed to ``ITKReader``.

    Example:
        >>> from monai.transforms import LoadImage
        >>> img = LoadImage(reader=DCEStudyReader(("pre", "post1")), image_only=True,
        ...                 ensure_channel_first=True)("STUDY")    # doctest: +SKIP
        >>> img.shape[0], json.loads(img.meta["dce_study"])["ordered_by"]  # doctest: +SKIP
        (2, 'AcquisitionTime')
    """

    def __init__(self, channels: Sequence[str] = ("pre", "post1"), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.channels = tuple(str(c) for c in channels)
        self.last_selection: StudySelection | None = None
        self._pending: StudySelection | None = None

    def read(self, data: Sequence[Any] | Any, **kwargs: Any) -> Any:
        import itk

        images = []
        self._pending = None
        for name in ensure_tuple(data):
            if os.path.isdir(str(name)) and is_study(name):
                selection = select_phases(name, self.channels)
                logger.info("DCE study %s", selection.summary())
                self._pending = self.last_selection = selection
                for stack in selection.used:
                    files = [str(f) for f in stack.files]
                    images.append(itk.imread(files if len(files) > 1 else files[0], **self.kwargs))
            else:
                images.append(super().read(name, **kwargs))
        return images if len(images) > 1 else images[0]

    def get_data(self, img: Any) -> tuple[np.ndarray, dict]:
        array, meta = super().get_data(img)
        if self._pending is not None:
            meta["dce_study"] = json.dumps(self._pending.describe())
            self._pending = None
        return array, meta


#: Names of the series folders of a case folder (``pre/``, ``post1/``, ``0000/`` ...), see ``list_inputs``.
CHANNEL_FOLDER = re.compile(r"^(pre|post\d*|last|\d{4})$", re.IGNORECASE)


def case_name_formatter(metadict: dict | None, saver: Any) -> dict:
    """``SaveImaged``'s ``output_name_formatter``: outputs named after the case, not its last series folder.

    A case folder of series folders (``caseA/pre``, ``caseA/post1``) is read as one image whose
    ``filename_or_obj`` is a series folder; MONAI's default formatter names the output after it
    (``post1_seg.nii.gz``), the same name for every case, so each case overwrote the one before.
    Here the subject is the case folder (``caseA_seg.nii.gz``); nnU-Net channel files
    (``caseA_0000.nii.gz`` ...) give ``caseA_seg.nii.gz`` too; every other input keeps MONAI's name.
    """
    from monai.data.folder_layout import default_name_formatter

    out = default_name_formatter(metadict, saver)
    path = Path(str(out["subject"]))
    if CHANNEL_FOLDER.match(path.name) and path.parent.name:
        out["subject"] = str(path.parent)
    source = Path(str((metadict or {}).get("filename_or_obj", "")))
    channel_file = CHANNEL_FILE.match(source.name)
    if channel_file:
        out["subject"] = str(path.with_name(channel_file.group(1)))
    return out
