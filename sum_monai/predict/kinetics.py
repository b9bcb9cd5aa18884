"""Kinetic maps of a predicted DCE-MRI case, written beside its mask, and the tumour's enhancement.

For bundles with ``scripts/kinetics.py`` and ``scripts/dce.py`` (``breast_mri_seg_3d``), every
case also gets, on the input's own voxel grid and with its affine (the grid of the mask):

- ``<name>_sub.nii.gz``: subtraction ``S1 - S0`` (first post-contrast minus pre-contrast);
- ``<name>_pe.nii.gz``: percentage enhancement ``100 (S1 - S0) / S0`` (0 outside the body);
- ``<name>_ser.nii.gz``: signal enhancement ratio ``(S1 - S0) / (S_last - S0)``, when the input
  has a later post-contrast phase (a study folder with 3 or more dynamic phases);

and its JSON a ``kinetics`` block: the phases used and, over the predicted tumour voxels, the
mean subtraction, percentage enhancement and SER (with the curve type of the mean SER: > 1.1
washout, 0.9-1.1 plateau, < 0.9 persistent). The formulas are the bundle's
(``scripts/kinetics.py``); the phases are read with the bundle's ``DCEStudyReader``, by the same
rules that picked the network's channels.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from sum_monai.bundle.locate import Bundle
from sum_monai.predict.cases import Case

__all__ = ["FILE_SUFFIXES", "KineticMapWriter", "curve_type"]

#: Output file suffix of each map.
FILE_SUFFIXES = {"subtraction": "_sub", "pe": "_pe", "ser": "_ser"}


def curve_type(ser: float | None) -> str | None:
    """Kinetic curve type of a signal enhancement ratio (Hylton's cut-offs)."""
    if ser is None:
        return None
    return "washout" if ser > 1.1 else "plateau" if ser >= 0.9 else "persistent"


def _round(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(float(x), digits)


class KineticMapWriter:
    """Compute and stage the kinetic maps of one case at a time.

    Args:
        dce: the bundle's ``scripts.dce`` module (reader).
        kinetics: the bundle's ``scripts.kinetics`` module (formulas).
    """

    def __init__(self, dce: ModuleType, kinetics: ModuleType) -> None:
        self.dce = dce
        self.kinetics = kinetics

    @classmethod
    def for_bundle(cls, bundle: Bundle) -> KineticMapWriter | None:
        """The writer of ``bundle``, or None when it has no ``scripts/kinetics.py`` / ``dce.py``."""
        from sum_monai.bundle.scripts import import_bundle_scripts

        scripts = bundle.root / "scripts"
        if not ((scripts / "kinetics.py").is_file() and (scripts / "dce.py").is_file()):
            return None
        return cls(import_bundle_scripts(bundle.root, "dce"), import_bundle_scripts(bundle.root, "kinetics"))

    @staticmethod
    def channels_for(case: Case) -> tuple[str, ...]:
        """``pre``, ``post1`` and, for a study with a later post-contrast phase, ``last``."""
        phases = (case.study or {}).get("dynamic_phases", [])
        posts = sum(1 for p in phases if p.get("role") == "post")
        return ("pre", "post1", "last") if posts >= 2 else ("pre", "post1")

    def run(self, case: Case, label_map: np.ndarray, affine: np.ndarray, stage: Path) -> tuple[dict[Path, str], dict[str, Any]]:
        """Write the maps of ``case`` into ``stage``.

        Args:
            case: the case (its inputs are read again, all phases the maps need).
            label_map: the predicted labels on the input grid.
            affine: their affine (the maps must share it).
            stage: scratch folder of the case.

        Returns:
            ``({staged file: output name}, kinetics record)``; no files (and a ``note``) when the
            phases do not lie on the mask's grid.
        """
        from monai.transforms import LoadImage

        from sum_monai.io.writers import save_nifti

        channels = self.channels_for(case)
        loader = LoadImage(reader=self.dce.DCEStudyReader(channels), image_only=True, ensure_channel_first=True)
        phases = loader(case.image)
        if int(phases.shape[0]) < 2:
            return {}, {"phases": None, "maps": None, "note": "a single phase: no kinetic maps"}
        if phases.shape[0] == 2:
            channels = channels[:2]
        maps = self.kinetics.kinetic_maps(phases)
        grid = np.asarray(phases.affine, dtype=np.float64)
        if tuple(phases.shape[1:]) != tuple(label_map.shape) or not np.allclose(grid, affine, atol=1e-3):
            return {}, {"phases": list(channels), "maps": None, "note": "phases are not on the mask's grid: no maps"}
        moves: dict[Path, str] = {}
        names: dict[str, str] = {}
        tumour = np.asarray(label_map) > 0
        means: dict[str, float | None] = {}
        arrays = {name: volume.detach().cpu().numpy().astype(np.float32, copy=False) for name, volume in maps.items()}
        # float maps of noisy tissue barely compress: gzip level 1 is ~4x faster than 6 for a few % more
        # bytes; zlib releases the GIL, so the maps compress side by side on two cores
        with ThreadPoolExecutor(max_workers=max(1, min(len(arrays), os.cpu_count() or 1))) as pool:
            staged = {
                name: pool.submit(save_nifti, stage / f"map{FILE_SUFFIXES[name]}.nii.gz", arr, grid, compresslevel=1)
                for name, arr in arrays.items()
            }
            for name, arr in arrays.items():
                names[name] = f"{case.name}{FILE_SUFFIXES[name]}.nii.gz"
                moves[staged[name].result()] = names[name]
                means[name] = float(arr[tumour].mean()) if tumour.any() else None
        ser = means.get("ser")
        record = {
            "phases": list(channels),
            "maps": names,
            "tumour": {
                "voxels": int(tumour.sum()),
                "mean_subtraction": _round(means["subtraction"]),
                "mean_enhancement_percent": _round(means["pe"]),
                "mean_ser": _round(ser),
                "curve_type": curve_type(ser),
            },
        }
        return moves, record
