"""DCE-MRI study folders on the package side, decided by the MRI bundle's own ``scripts/dce.py``.

The rules that find the dynamic series of a study and pick its phases live in the bundle
(``bundles/breast_mri_seg_3d/scripts/dce.py``), so a bundle copied elsewhere (model zoo, MONAI
Label) reads studies without sum_monai. This module loads those scripts and turns their answers
into what the package needs: prediction cases (:func:`study_case`), msd datalist channels
(:func:`study_channel_folders`) and :class:`~sum_monai.errors.DataError` for unusable studies.

Example:
    >>> finder = StudyFinder.for_bundle(Bundle.find("breast_mri_seg_3d"))   # doctest: +SKIP
    >>> finder.is_study("data/dicom/breast_0001")                          # doctest: +SKIP
    True
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from sum_monai.errors import DataError

if TYPE_CHECKING:
    from sum_monai.bundle.locate import Bundle

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_CHANNELS", "StudyFinder"]

#: The DCE channels of ``breast_mri_seg_3d`` (its config key ``dce_channels``).
DEFAULT_CHANNELS = ("pre", "post1")
#: The bundle whose ``scripts/dce.py`` decides when no bundle is given (msd datalists).
MRI_BUNDLE = "breast_mri_seg_3d"


@dataclass(frozen=True)
class StudyFinder:
    """Study-folder decisions of one bundle's ``scripts/dce.py`` for a set of DCE channels.

    Attributes:
        dce: the bundle's ``scripts.dce`` module.
        channels: channel names in network order (``pre``, ``post1`` ...).
    """

    dce: ModuleType
    channels: tuple[str, ...] = DEFAULT_CHANNELS

    @classmethod
    def for_bundle(cls, bundle: Bundle, overrides: dict[str, Any] | None = None) -> StudyFinder | None:
        """The finder of ``bundle`` (channels from its ``dce_channels``), or None without ``scripts/dce.py``."""
        import json

        from sum_monai.bundle.scripts import import_bundle_scripts

        if not (bundle.root / "scripts" / "dce.py").is_file():
            return None
        channels = (overrides or {}).get("dce_channels")
        if channels is None:
            try:
                config = json.loads(bundle.config("inference.json").read_text())
                channels = config.get("dce_channels", DEFAULT_CHANNELS)
            except (OSError, ValueError):
                channels = DEFAULT_CHANNELS
        return cls(import_bundle_scripts(bundle.root, "dce"), tuple(str(c) for c in channels))

    @classmethod
    def default(cls, channels: Sequence[str] = DEFAULT_CHANNELS) -> StudyFinder:
        """The finder of the repository's MRI bundle (for the msd datalist)."""
        from sum_monai.bundle.locate import REPO_BUNDLES
        from sum_monai.bundle.scripts import import_bundle_scripts

        return cls(import_bundle_scripts(REPO_BUNDLES / MRI_BUNDLE, "dce"), tuple(channels))

    def is_study(self, folder: str | Path) -> bool:
        """Whether ``folder`` is one study with several series / temporal positions."""
        return bool(self.dce.is_study(folder))

    def select(self, folder: str | Path, channels: Sequence[str] | None = None) -> Any:
        """The bundle's selection for ``folder`` (``scripts.dce.StudySelection``).

        Raises:
            DataError: the study has no usable phases (the bundle's message, naming what was found).
        """
        try:
            return self.dce.select_phases(folder, tuple(channels or self.channels))
        except self.dce.StudyError as err:
            raise DataError(Path(folder), _without_folder(str(err), folder)) from err

    def study_case(self, folder: Path, name: str) -> Any:
        """A prediction :class:`~sum_monai.predict.cases.Case` for a study folder.

        The case reads the folder itself (the bundle's ``DCEStudyReader`` picks the phases again,
        by the same rules); its DICOM SEG references the pre-contrast series; an unusable study
        becomes a case with its ``problem``.
        """
        from sum_monai.predict.cases import Case

        try:
            selection = self.select(folder)
        except DataError as err:
            return Case(name, (folder,), None, err.problem)
        logger.info("DCE study %s", selection.summary())
        return Case(
            name, (folder,), folder, dicom_files=tuple(selection.used[0].files), study=selection.describe()
        )

    def channel_folders(self, folder: Path, channels: Sequence[str]) -> list[Path]:
        """The series folder of each channel of a study, for a datalist (msd layout).

        Raises:
            DataError: unusable study, or a chosen phase that does not fill a folder of its own
                (series side by side in one folder, or phases inside one series): a datalist
                names one folder per channel.
        """
        selection = self.select(folder, channels)
        logger.info("DCE study %s", selection.summary())
        out = []
        for name, stack in zip(channels, selection.used, strict=True):
            parent = stack.files[0].parent
            siblings = [p for p in parent.iterdir() if p.is_file() and not p.name.startswith(".")]
            if parent == folder or len(siblings) != len(stack.files) or any(f.parent != parent for f in stack.files):
                raise DataError(
                    folder,
                    f"channel '{name}' ({stack.label}) shares its folder with other images; the msd layout needs "
                    "each series in a folder of its own (sum-monai predict reads such studies as they are)",
                )
            out.append(parent)
        return out


def _without_folder(message: str, folder: str | Path) -> str:
    """The bundle's message without its leading ``<folder>: `` (DataError names the path itself)."""
    prefix = f"{folder}: "
    return message[len(prefix) :] if message.startswith(prefix) else message
