"""Which inputs are cases: the files and folders ``sum-monai predict --input`` accepts.

A *case* is what the bundle's ``LoadImaged`` reads in one go: one file, one DICOM series folder,
or, for a multi-channel 3D bundle (DCE-MRI: pre-contrast + first post-contrast), the list of its
channel files / series folders, in channel order.

2D bundles (ultrasound, mammography):
    ``--input`` is an image file (``.png .jpg .jpeg .dcm`` or a DICOM file without suffix) or a
    folder; every such file below the folder (recursively) is a case, except masks named
    ``*_mask.png`` / ``*_mask_N.png`` (BUSI / CBIS-DDSM naming) and hidden files.

3D bundles with one channel:
    a volume file (``.nii .nii.gz .nrrd .nhdr``), a DICOM series folder (the ``.dcm`` files of
    one series), or a folder of such files and series folders.

3D bundles with N channels (``breast_mri_seg_3d``: N = 2):
    - a 4D file holding the N channels, e.g. ``case.nii.gz`` of shape ``(X, Y, Z, 2)``;
    - nnU-Net naming: ``<case>_0000.nii.gz`` (channel 0, pre-contrast), ``<case>_0001.nii.gz``
      (channel 1, post-contrast) side by side in one folder;
    - a *case folder* holding one DICOM series folder per channel: ``pre/`` (or ``0000/``) and
      ``post1/`` (or ``post/``, ``0001/``); further channels ``post2/`` or ``0002/`` ...;
    - a *DCE study folder* as the scanner exports it (many series, in sub-folders or side by
      side, or every phase in one series), when the bundle has ``scripts/dce.py``: the bundle's
      rules find the dynamic series and pick its phases (:mod:`sum_monai.io.study`);
    - a folder of the above: its volume files, nnU-Net groups, and subfolders that are case or
      study folders.

Names: a case is named after its input relative to ``--input``: ``benign/benign (1)`` for
``--input busi`` holding ``benign/benign (1).png``, ``breast_0001`` for a nnU-Net group or a
case folder. Outputs are ``<name>_seg.<ext>``, ``<name>.json`` and ``<name>_seg.dcm``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sum_monai.errors import DataError
from sum_monai.io.read import image_suffix, reader_spec

if TYPE_CHECKING:
    from sum_monai.io.study import StudyFinder

__all__ = ["Case", "channel_folder_names", "find_cases"]

SUFFIXES_2D = (".png", ".jpg", ".jpeg", ".pgm", ".dcm")
SUFFIXES_3D = (".nii", ".nii.gz", ".nrrd", ".nhdr")
#: BUSI / CBIS-DDSM mask files, never cases.
MASK_NAME = re.compile(r"_mask(_\d+)?$", re.IGNORECASE)
#: nnU-Net channel files: ``<case>_<4 digits>.<ext>``.
CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


@dataclass(frozen=True)
class Case:
    """One prediction input.

    Attributes:
        name: output name relative to ``--output`` without suffix (``"benign/benign (1)"``).
        paths: the files / folders the bundle reads, in channel order.
        dicom: the DICOM file or series folder the DICOM SEG refers to (channel 0), else None.
        problem: why the case cannot be predicted (e.g. a missing channel file); reported as a
            failed case instead of being run.
        dicom_files: the DICOM files the SEG refers to when ``dicom`` is a study folder (the
            pre-contrast series); empty otherwise.
        study: for a DCE study folder, which series were used and why (``StudySelection.describe()``).
    """

    name: str
    paths: tuple[Path, ...]
    dicom: Path | None = None
    problem: str = field(default="", compare=False)
    dicom_files: tuple[Path, ...] = field(default=(), compare=False)
    study: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def image(self) -> str | list[str]:
        """What ``LoadImaged`` gets: one path, or the list of channel paths."""
        return str(self.paths[0]) if len(self.paths) == 1 else [str(p) for p in self.paths]

    @property
    def input(self) -> Path:
        """The first input path (named in errors)."""
        return self.paths[0]


def channel_folder_names(channel: int) -> tuple[str, ...]:
    """Accepted names of the series folder of ``channel`` in a case folder.

    Example:
        >>> channel_folder_names(0), channel_folder_names(1)
        (('pre', '0000'), ('post1', 'post', '0001'))
    """
    if channel == 0:
        return ("pre", f"{channel:04d}")
    return (f"post{channel}", *(("post",) if channel == 1 else ()), f"{channel:04d}")


def _stem(path: Path) -> str:
    suffix = image_suffix(path)
    return path.name[: -len(suffix)] if suffix else path.name


def _is_dicom_file(path: Path) -> bool:
    """A ``.dcm`` file, or a file without a known suffix that has the DICOM preamble."""
    if not path.is_file():
        return False
    try:
        return reader_spec(path).reader == "PydicomReader"
    except DataError:
        return False


def _visible(paths: Iterable[Path], skip: Path | None) -> list[Path]:
    out = []
    for p in sorted(paths):
        if p.name.startswith(".") or (skip is not None and (p == skip or skip in p.parents)):
            continue
        out.append(p)
    return out


def _cases_2d(root: Path, skip: Path | None) -> list[Case]:
    cases = []
    for path in _visible(root.rglob("*"), skip):
        if not path.is_file() or any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        if image_suffix(path) in SUFFIXES_2D or _is_dicom_file(path):
            if MASK_NAME.search(_stem(path)):
                continue
            rel = path.relative_to(root)
            cases.append(Case(str(rel.parent / _stem(path)), (path,), path if _is_dicom_file(path) else None))
    return cases


def _series_folder(path: Path) -> bool:
    """A folder holding DICOM files directly (one series; read_image checks it is only one)."""
    return path.is_dir() and any(_is_dicom_file(p) for p in path.iterdir() if not p.name.startswith("."))


def _case_folder(folder: Path, channels: int) -> Case | None:
    """The case of a folder holding one series folder per channel, else None."""
    if channels == 1:
        return Case(folder.name, (folder,), folder) if _series_folder(folder) else None
    found: list[Path | None] = []
    for c in range(channels):
        names = channel_folder_names(c)
        found.append(next((folder / n for n in names if (folder / n).is_dir()), None))
    if all(f is None for f in found):
        return None
    missing = [channel_folder_names(c)[0] for c, f in enumerate(found) if f is None]
    paths = tuple(f for f in found if f is not None)
    problem = f"case folder lacks the series folder(s) {missing}" if missing else ""
    return Case(folder.name, paths, paths[0], problem)


def _has_plain_cases(root: Path, channels: int) -> bool:
    """Whether ``root`` holds volume files or case folders (then it is not one study folder)."""
    for path in root.iterdir():
        if path.name.startswith("."):
            continue
        if (path.is_file() and image_suffix(path) in SUFFIXES_3D) or (path.is_dir() and _case_folder(path, channels)):
            return True
    return False


def _cases_3d(root: Path, channels: int, skip: Path | None, studies: StudyFinder | None = None) -> list[Case]:
    own = _case_folder(root, channels)
    if own is not None:
        return [own]
    if studies is not None and channels > 1 and not _has_plain_cases(root, channels) and studies.is_study(root):
        return [studies.study_case(root, root.name)]
    cases: list[Case] = []
    groups: dict[str, dict[int, Path]] = {}
    for path in _visible(root.iterdir(), skip):
        if path.is_dir():
            sub = _case_folder(path, channels)
            if sub is None and studies is not None and channels > 1 and studies.is_study(path):
                sub = studies.study_case(path, path.name)
            if sub is not None:
                cases.append(sub)
            continue
        if image_suffix(path) not in SUFFIXES_3D:
            continue
        m = CHANNEL_FILE.match(_stem(path))
        if channels > 1 and m:
            groups.setdefault(m["case"], {})[int(m["channel"])] = path
        else:
            cases.append(Case(_stem(path), (path,)))
    for name, files in sorted(groups.items()):
        missing = [f"{name}_{c:04d}" for c in range(channels) if c not in files]
        extra = sorted(c for c in files if c >= channels)
        problem = ""
        if missing:
            problem = f"channel file(s) {missing} missing (the bundle needs {channels} channels)"
        elif extra:
            problem = f"channel file(s) {[f'{name}_{c:04d}' for c in extra]} beyond the bundle's {channels} channels"
        paths = tuple(files[c] for c in sorted(files) if c < channels) or tuple(
            files[c] for c in sorted(files)
        )
        cases.append(Case(name, paths, None, problem))
    return sorted(cases, key=lambda c: c.name)


def find_cases(
    input_path: str | Path,
    spatial_dims: int,
    channels: int,
    skip: str | Path | None = None,
    studies: StudyFinder | None = None,
) -> list[Case]:
    """List the cases of ``input_path`` for a bundle with ``spatial_dims`` and ``channels``.

    Args:
        input_path: a file or folder (see the module docstring for the layouts).
        spatial_dims: 2 or 3 (from the bundle's metadata).
        channels: the network's input channels (from the bundle's metadata).
        skip: a folder never scanned (the output folder, when it lies inside the input).
        studies: the bundle's DCE study rules (:class:`~sum_monai.io.study.StudyFinder`); None for
            bundles without ``scripts/dce.py`` (study folders are then not recognised).

    Returns:
        The cases, sorted by name; cases with a ``problem`` are reported, not run.

    Raises:
        DataError: the input does not exist, or a folder holds no case in any accepted layout.
    """
    path = Path(input_path)
    skip_path = Path(skip).resolve() if skip is not None else None
    if not path.exists():
        raise DataError(path, "input not found")
    if path.is_file():
        if channels > 1:
            m = CHANNEL_FILE.match(_stem(path))
            if m and int(m["channel"]) < channels:
                siblings = _cases_3d(path.parent, channels, skip_path)
                return [c for c in siblings if path in c.paths] or [Case(_stem(path), (path,))]
        return [Case(_stem(path), (path,), path if _is_dicom_file(path) else None)]
    root = path.resolve()
    cases = _cases_2d(root, skip_path) if spatial_dims == 2 else _cases_3d(root, channels, skip_path, studies)
    if not cases:
        if spatial_dims == 2:
            layout = (
                f"image files ({', '.join(SUFFIXES_2D)} or DICOM without suffix) in the folder or below it"
            )
        elif channels == 1:
            layout = f"volume files ({', '.join(SUFFIXES_3D)}) or DICOM series folders"
        else:
            names = " + ".join("/".join(channel_folder_names(c)) for c in range(channels))
            layout = (
                f"{channels}-channel cases: 4D volume files, <case>_0000 ... <case>_{channels - 1:04d} files, "
                f"case folders with one DICOM series folder per channel ({names})"
                + (", or DCE study folders (DICOM series of one study)" if studies is not None else "")
            )
        raise DataError(path, f"no cases found; expected {layout}")
    names = [c.name for c in cases]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataError(
            path, f"several inputs would write the same outputs {dupes[:5]} (same name, other suffix)"
        )
    return cases
