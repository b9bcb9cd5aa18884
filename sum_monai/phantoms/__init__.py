"""Built-in synthetic phantoms: the project's default data, in the real file formats.

``generate(modality, n, out, seed)`` writes a whole folder atomically (it appears complete or
not at all) with the same bytes for the same seed and settings:

- ``"us"``: breast ultrasound in the BUSI layout (8-bit PNG + 0/255 masks), see
  :mod:`sum_monai.phantoms.us`; ``n`` counts cases (images).
- ``"mammo"``: DICOM MG images, PNG masks and ``cases.csv``, see
  :mod:`sum_monai.phantoms.mammo`; ``n`` counts patients (2-4 images each).
- ``"mri"``: 2-channel DCE breast MRI as NIfTI (nnU-Net layout) and DICOM series, see
  :mod:`sum_monai.phantoms.mri`; ``n`` counts cases.

Every folder also gets ``overview.png`` (images with mask contours, :func:`write_overview`) and
``phantom.json`` (generator version, seed, all settings and one record per case, including the
near-duplicate ground truth of ultrasound cases).

Case ``i`` depends only on ``(seed, modality, i)`` and the settings, so generating more cases
never changes the first ones.

Example:
    >>> from sum_monai.phantoms import generate
    >>> files = generate("us", 12, "data/phantom_us", seed=0, progress=False)  # doctest: +SKIP
    >>> files = generate("mri", 2, "data/phantom_mri", lesion_contrast=1.0, format="nifti")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from sum_monai.errors import ConfigError, DataError
from sum_monai.phantoms.mammo import MammoParams
from sum_monai.phantoms.mri import MRIParams
from sum_monai.phantoms.overview import write_overview
from sum_monai.phantoms.us import UltrasoundParams

__all__ = [
    "MODALITIES",
    "PARAMS",
    "MRIParams",
    "MammoParams",
    "UltrasoundParams",
    "generate",
    "make_params",
    "write_overview",
]

MODALITIES = ("us", "mammo", "mri")
#: The settings dataclass of each modality.
PARAMS: dict[str, type] = {"us": UltrasoundParams, "mammo": MammoParams, "mri": MRIParams}
#: File in every phantom folder that records how it was made (and marks it as replaceable).
MANIFEST = "phantom.json"


def make_params(modality: str, params: Any = None, **overrides: Any) -> Any:
    """Build the settings of ``modality`` from defaults, an optional instance and overrides.

    Args:
        modality: ``"us"``, ``"mammo"`` or ``"mri"``.
        params: a settings instance to start from (defaults if ``None``).
        overrides: field values to change, e.g. ``lesion_contrast=0.4``; tuples may be lists.

    Raises:
        ConfigError: unknown modality, unknown setting or a value out of range.
    """
    if modality not in PARAMS:
        raise ConfigError(f"unknown phantom modality {modality!r}; choose one of {', '.join(MODALITIES)}")
    cls = PARAMS[modality]
    base = params if params is not None else cls()
    if not isinstance(base, cls):
        raise ConfigError(f"{modality} phantoms take {cls.__name__}, got {type(base).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"unknown {modality} phantom setting(s) {unknown}; valid: {sorted(names)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    try:
        return dataclasses.replace(base, **values)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{modality} phantom settings: {err}") from err


def _check_target(out: Path, overwrite: bool) -> bool:
    """Decide whether ``out`` may be (re)placed; returns ``True`` if an existing folder is replaced."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise DataError(out, "exists and is not a folder")
    if not any(out.iterdir()):
        return True  # an empty folder is simply replaced
    if not overwrite:
        raise DataError(out, "folder is not empty; use --overwrite (overwrite=True) to replace it")
    if not (out / MANIFEST).is_file():
        raise DataError(
            out,
            f"folder is not empty and has no {MANIFEST}, so it was not written by `sum-monai synth`; "
            "refusing to replace it (choose another folder or empty it yourself)",
        )
    return True


def generate(
    modality: str,
    n: int,
    out: str | Path,
    seed: int = 0,
    *,
    params: Any = None,
    overwrite: bool = False,
    overview: bool = True,
    progress: bool = True,
    **overrides: Any,
) -> list[Path]:
    """Write ``n`` phantom cases of ``modality`` into the new folder ``out``.

    Args:
        modality: ``"us"``, ``"mammo"`` or ``"mri"``.
        n: number of cases (mammography: patients, each with 2-4 images).
        out: the folder to create. It must not exist or be empty, unless ``overwrite`` is set
            and it holds an earlier phantom (``phantom.json``); other folders are never replaced.
        seed: the run's seed; the same seed and settings give byte-identical files.
        params: a settings dataclass (:class:`UltrasoundParams`, :class:`MammoParams`,
            :class:`MRIParams`); defaults if ``None``.
        overwrite: replace an earlier phantom folder (only after the new one is complete).
        overview: also write ``overview.png``.
        progress: show a tqdm progress bar over cases.
        overrides: settings to change, e.g. ``lesion_contrast=0.4, near_duplicate_rate=0.2``.

    Returns:
        Every file written (final paths), sorted.

    Raises:
        ConfigError: bad modality, ``n``, ``seed`` or settings.
        DataError: ``out`` cannot be written (not empty, not a folder).
    """
    from sum_monai import __version__
    from sum_monai.phantoms.mammo import write_mammo
    from sum_monai.phantoms.mri import write_mri
    from sum_monai.phantoms.us import write_us
    from sum_monai.utils.atomic import atomic_dir, atomic_write_text

    settings = make_params(modality, params, **overrides)
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"n must be a positive number of cases, got {n!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    out = Path(out)
    replace = _check_target(out, overwrite)
    writer = {"us": write_us, "mammo": write_mammo, "mri": write_mri}[modality]
    with atomic_dir(out, overwrite=replace) as tmp:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the result is an ordinary folder
        files, records = writer(tmp, n, seed, settings, progress=progress)
        if overview:
            files.append(write_overview(modality, tmp, title=out.name))
        manifest = {
            "generator": "sum_monai.phantoms",
            "version": __version__,
            "modality": modality,
            "n": n,
            "seed": seed,
            "params": dataclasses.asdict(settings),
            "cases": records,
        }
        files.append(atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=1) + "\n"))
        final = sorted(out / p.relative_to(tmp) for p in files)
    return final
