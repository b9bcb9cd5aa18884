"""What a layout scanner returns: cases (paths relative to the dataset root) and label rules.

Scanners (:mod:`.busi`, :mod:`.mammo`, :mod:`.paired`, :mod:`.msd`) only look at names and
tables; opening the files is left to validation, so scanning a large folder is quick.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sum_monai.errors import DataError, DataErrors


@dataclass
class Case:
    """One training example found by a scanner.

    Args:
        key: path (POSIX, relative to the dataset root) that identifies the case; hashed into
            ``case_id``; for several files, the first image.
        image: image path, or the list of channel paths (DCE), relative to the dataset root.
        label: mask / label-map path, or the list of masks to merge (BUSI).
        cls: stratification class (``"benign"``, BI-RADS density ``"A"``...), or None.
        patient: raw patient key (never written out; only its keyed hash), or None when the case
            is its own patient.
        extra: more datalist fields (``lesion_class``, ``laterality``...), written as they are.
    """

    key: str
    image: str | list[str]
    label: str | list[str]
    cls: str | None = None
    patient: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def images(self) -> list[str]:
        """Image paths as a list."""
        return [self.image] if isinstance(self.image, str) else list(self.image)


@dataclass(frozen=True)
class LabelSpec:
    """Which values masks may hold.

    Args:
        values: declared label values; empty means a binary mask ({0, 1} or {0, 255}).

    Example:
        >>> LabelSpec().allows({0.0, 255.0}), LabelSpec((0, 1, 2)).allows({0.0, 3.0})
        (True, False)
    """

    values: tuple[int, ...] = ()

    @property
    def binary(self) -> bool:
        """True for binary masks."""
        return not self.values

    def allows(self, found: Iterable[float]) -> bool:
        """True if every value in ``found`` is allowed."""
        found = set(found)
        if self.binary:
            return found <= {0, 1} or found <= {0, 255}
        return found <= set(self.values)

    def describe(self) -> str:
        """Words for error messages."""
        if self.binary:
            return "a binary mask ({0, 1} or {0, 255})"
        return "the declared label values {" + ", ".join(str(v) for v in self.values) + "}"

    def to_meta(self) -> dict[str, Any]:
        """JSON form stored in the datalist ``meta`` block."""
        return {"kind": "binary"} if self.binary else {"kind": "values", "values": list(self.values)}

    @classmethod
    def from_meta(cls, meta: dict[str, Any] | None) -> LabelSpec:
        """Inverse of :meth:`to_meta`; a missing block means binary masks."""
        if not meta or meta.get("kind", "binary") == "binary":
            return cls()
        return cls(tuple(int(v) for v in meta["values"]))


@dataclass
class Scan:
    """Result of scanning one dataset folder.

    Args:
        layout: layout name (``"busi"``, ``"mammo"``, ``"paired"``, ``"msd"``).
        root: dataset root.
        cases: the cases, sorted by key.
        labels: allowed mask values.
        channels: channel names for multi-channel images (MRI), else None.
        notes: facts for the datalist ``meta`` block (counts only: no names).
    """

    layout: str
    root: Path
    cases: list[Case]
    labels: LabelSpec = field(default_factory=LabelSpec)
    channels: list[str] | None = None
    notes: dict[str, Any] = field(default_factory=dict)


def rel(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` in POSIX form."""
    return path.relative_to(root).as_posix()


def require_folder(root: Path, layout: str, example: str) -> None:
    """Fail with one clear message if ``root`` is not an existing folder.

    Raises:
        DataError: naming ``root``, the expected layout and an example path.
    """
    if not root.is_dir():
        raise DataError(root, f"folder not found (expected the {layout} layout, e.g. {root / example})")


def no_cases(root: Path, layout: str, example: str) -> DataError:
    """The error for a folder holding no case of the expected layout."""
    return DataError(root, f"no cases found: expected the {layout} layout, e.g. {root / example}")


def raise_all(errors: list[DataError], context: str) -> None:
    """Raise the collected problems together as DataErrors (nothing happens when there are none)."""
    if errors:
        raise DataErrors(errors, context)
