"""Turn what the user passes as ``--data`` into a datalist a bundle can read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sum_monai.errors import DataError
from sum_monai.utils.atomic import atomic_write_text

if TYPE_CHECKING:
    from sum_monai.bundle.locate import Bundle

SPLITS = ("training", "validation", "test")


def absolute_paths(item: dict, base: Path) -> dict:
    """A datalist entry with its ``image`` and ``label`` paths made absolute against ``base``."""
    out = dict(item)
    for key in ("image", "label"):
        value = out.get(key)
        if isinstance(value, str):
            out[key] = str((base / value).resolve())
        elif isinstance(value, list):
            out[key] = [str((base / v).resolve()) for v in value]
    return out


def load_datalist(path: Path) -> dict:
    """Read a datalist JSON, with a clear error for a missing, unreadable or empty one."""
    if not path.is_file():
        raise DataError(path, "datalist not found")
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DataError(path, f"not a readable JSON datalist ({err})") from err
    if not isinstance(content, dict) or not any(content.get(s) for s in SPLITS):
        raise DataError(path, f"datalist has no cases under any of {list(SPLITS)}")
    return content


def detect_layout(root: Path) -> str:
    """Name of the dataset layout of folder ``root`` (``busi``, ``mammo``, ``mias``, ``msd`` or ``paired``).

    Raises:
        DataError: when the folder matches none of them.
    """
    if any((root / c).is_dir() for c in ("benign", "malignant", "normal")):
        return "busi"
    if (root / "cases.csv").is_file():
        return "mammo"
    if (root / "Info.txt").is_file() and any(root.glob("mdb*.pgm")):
        return "mias"
    if (root / "dataset.json").is_file() or (root / "imagesTr").is_dir():
        return "msd"
    if (root / "images").is_dir() and (root / "labels").is_dir():
        return "paired"
    raise DataError(
        root,
        "not a dataset folder in a known layout: expected benign/ malignant/ normal/ (BUSI), cases.csv "
        "(mammography), Info.txt + mdbNNN.pgm (mini-MIAS), imagesTr/ + dataset.json (Decathlon) or images/ + labels/ (paired); "
        "or pass a datalist JSON made with `sum-monai datalist`",
    )


def prepare_datalist(
    data: Path,
    out_dir: Path,
    seed: int = 0,
    require: tuple[str, ...] = ("training", "validation"),
    require_lesions: tuple[str, ...] = (),
    bundle: Bundle | None = None,
) -> Path:
    """Return a checked datalist JSON for ``data``, written into ``out_dir`` when it had to be built.

    Every file is opened and checked before the bundle builds a dataset from it (as
    ``sum-monai validate`` does): a folder is validated while its datalist is built, a JSON file
    here, so a broken image is one clear error instead of a crash inside the data loader.

    Args:
        data: a datalist JSON (used as is when every case has a ``case_id``; otherwise copied
            into ``out_dir`` with absolute paths and anonymised case IDs added), or a dataset
            folder in a supported layout (BUSI, mammography, paired, Decathlon), from which a
            datalist with seeded group-aware splits is built and validated.
        out_dir: where a built or completed datalist is written (``datalist.json``).
        seed: split seed for folders.
        require: splits that must hold at least one case.
        require_lesions: splits that must hold at least one case whose mask marks a lesion
            (training cannot learn, nor pick its best model, from normal images only).
        bundle: the bundle the data is for: its readers open every file (so checks see what its
            network sees), and its DICOM Modality and dimensions (2D or 3D, from the metadata)
            are checked on every image of a JSON datalist.

    Raises:
        DataError: unreadable datalist, empty required split, a split without lesions, or a
            folder in no known layout.
        DataErrors: every file problem found (missing, empty, corrupt, NaN, sizes, geometry ...).
    """
    from sum_monai.datalists.validate import validate_datalist

    checks: dict[str, Any] = {}
    if bundle is not None:
        from sum_monai.bundle.readers import input_checks

        checks = input_checks(bundle).as_kwargs()
    data = Path(data)
    if data.is_dir():
        from sum_monai.datalists.build import build_datalist

        path = out_dir / "datalist.json"
        built = build_datalist(detect_layout(data), data, path, seed=seed, loader=checks.get("loader"))
        lesions = built["meta"].get("lesion_cases", {})
        content = load_datalist(path)
    else:
        path = data
        content = load_datalist(path)
        lesions = validate_datalist(path, progress=False, **checks).lesions
        base = path.resolve().parent
        if not all(item.get("case_id") for s in SPLITS for item in content.get(s, [])):
            from sum_monai.datalists.ids import case_id

            root = base
            for split in SPLITS:
                items = [absolute_paths(item, base) for item in content.get(split, [])]
                for item in items:
                    if not item.get("case_id"):
                        image = item["image"][0] if isinstance(item["image"], list) else item["image"]
                        item["case_id"] = case_id(str(Path(image).relative_to(root)) if Path(image).is_relative_to(root) else image)
                content[split] = items
            path = out_dir / "datalist.json"
            atomic_write_text(path, json.dumps(content, indent=1) + "\n")
    for split in require:
        if not content.get(split):
            raise DataError(path, f"the {split!r} split is empty; training needs cases in {list(require)}")
    for split in require_lesions:
        if content.get(split) and not lesions.get(split):
            raise DataError(
                data,
                f"no case of the {split!r} split has a lesion in its mask ({len(content[split])} cases, all normal): "
                "a model cannot learn lesions, nor be selected by Dice, from normal images only",
            )
    return path
