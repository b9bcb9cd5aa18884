"""Scan a dataset folder, group, split, validate and write a MONAI datalist JSON.

The JSON is what :func:`monai.data.load_decathlon_datalist` reads (``base_dir`` = the JSON's
folder; paths relative to it), with ``training``, ``validation`` and ``test`` lists and a ``meta``
block (layout, seed, fractions, counts per split and class, groups, near-duplicate groups by
``case_id``, label values, channels). The same inputs and seed give a byte-identical file; the
file is written atomically and never when validation fails.
"""

from __future__ import annotations

import inspect
import json
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sum_monai.datalists.busi import scan_busi
from sum_monai.datalists.cases import Case, Scan
from sum_monai.datalists.ids import case_id, file_group_id, salt_source
from sum_monai.datalists.mammo import scan_mammo
from sum_monai.datalists.mias import scan_mias
from sum_monai.datalists.msd import scan_msd
from sum_monai.datalists.near_dups import DEFAULT_THRESHOLD, HASH_SIZE, THUMB_SIZE
from sum_monai.datalists.paired import scan_paired
from sum_monai.datalists.split import MAX_FOLDS, SPLITS, assign_folds, assign_splits, check_fractions
from sum_monai.errors import ConfigError, DataError
from sum_monai.utils.atomic import check_can_write

#: Layout name -> scanner.
LAYOUTS: dict[str, Callable[..., Scan]] = {
    "busi": scan_busi,
    "mammo": scan_mammo,
    "mias": scan_mias,
    "paired": scan_paired,
    "msd": scan_msd,
}
#: Layouts whose images are checked for near-duplicates unless told otherwise.
NEAR_DUPS_BY_DEFAULT = {"busi"}


def _group_anchors(scan: Scan, near_pairs: list[list[int]]) -> list[str]:
    """Group of each case, named by its smallest member key (raw: only hashed when written).

    Cases sharing a patient or a near-duplicate set are joined (connected components). The split
    uses these raw keys, not the hashed ids, so it does not depend on the id salt.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(scan.cases)
    rows, cols = list(range(n)), list(range(n))
    first_of_patient: dict[str, int] = {}
    for i, case in enumerate(scan.cases):
        if case.patient is not None:
            j = first_of_patient.setdefault(case.patient, i)
            rows.append(i)
            cols.append(j)
    for members in near_pairs:
        rows.extend(members[1:])
        cols.extend([members[0]] * (len(members) - 1))
    graph = coo_matrix(([1] * len(rows), (rows, cols)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    anchor: dict[int, str] = {}
    for i, case in enumerate(scan.cases):
        comp = int(component[i])
        anchor[comp] = min(anchor.get(comp, case.key), case.key)
    return [anchor[int(c)] for c in component]


def _relative_to(path: Path, folder: Path) -> str:
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(folder))).as_posix()


def _entry(case: Case, scan: Scan, out_dir: Path) -> dict[str, Any]:
    """Datalist entry of a case (``group`` is added once the groups are known)."""

    def to_out(p: str | list[str]) -> str | list[str]:
        if isinstance(p, list):
            return [_relative_to(scan.root / q, out_dir) for q in p]
        return _relative_to(scan.root / p, out_dir)

    entry: dict[str, Any] = {"image": to_out(case.image), "label": to_out(case.label)}
    if case.cls is not None:
        entry["class"] = case.cls
    entry.update(case.extra)
    entry["case_id"] = case_id(case.key)
    return entry


def _counts(entries: dict[str, list[dict[str, Any]]], classes: list[str]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for split in SPLITS:
        per = Counter(str(e.get("class")) for e in entries[split])
        row = {c: per.get(c, 0) for c in classes}
        row["total"] = len(entries[split])
        counts[split] = row
    return counts


def _folds_outside_test(
    classes: list[str | None], anchors: list[str], splits: list[str], n_folds: int, seed: int
) -> dict[int, int]:
    """Case index -> cross-validation fold, for the cases not in the test split."""
    pool = [i for i, s in enumerate(splits) if s != "test"]
    folds = assign_folds([classes[i] for i in pool], [anchors[i] for i in pool], n_folds, seed)
    return dict(zip(pool, folds, strict=True))


def _fold_meta(entries: dict[str, list[dict[str, Any]]], classes: list[str], n_folds: int) -> dict[str, Any]:
    """``meta.folds``: the number of folds and the cases per fold and class."""
    members = [e for s in ("training", "validation") for e in entries[s]]
    counts = {}
    for k in range(n_folds):
        per = Counter(str(e.get("class")) for e in members if e["fold"] == k)
        counts[str(k)] = {**{c: per.get(c, 0) for c in classes}, "total": sum(per.values())}
    return {"n": n_folds, "key": "fold", "validation_fold": 0, "counts": counts}


def build_datalist(
    layout: str,
    root: str | Path,
    out: str | Path,
    seed: int = 0,
    val_frac: float = 0.15,
    test_frac: float = 0.15,
    near_dups: bool | None = None,
    near_dup_threshold: int = DEFAULT_THRESHOLD,
    validate: bool = True,
    progress: bool = True,
    folds: int = 0,
    loader: Any = None,
    **layout_options: Any,
) -> dict[str, Any]:
    """Build, validate and write the datalist of one dataset folder.

    Args:
        layout: ``"busi"``, ``"mammo"``, ``"paired"`` or ``"msd"`` (see :data:`LAYOUTS`).
        root: dataset folder.
        out: datalist JSON to write; paths in it are relative to its folder.
        seed: split seed.
        val_frac, test_frac: fractions of cases for validation and test (0 allowed); training
            gets the rest.
        near_dups: group near-duplicate images (perceptual hash); default on for BUSI only.
        near_dup_threshold: Hamming threshold in bits of 256 (see :mod:`.near_dups`).
        validate: open and check every file before writing (:func:`.validate.validate_datalist`).
        progress: show progress bars.
        folds: when >= 2, every case outside ``test`` gets a cross-validation ``fold`` (groups
            whole, classes balanced; ``val_frac`` is then ignored): fold 0 is the ``validation``
            list and the other folds ``training``, so the file trains fold 0 as it is, and
            ``sum-monai cv`` derives the datalist of every fold from it.
        **layout_options: passed to the scanner (e.g. ``label_suffix``, ``class_regex`` for
            ``paired``, ``csv_name`` for ``mammo``, ``group_regex``).

    Returns:
        the datalist written.

    Raises:
        ConfigError: unknown layout, bad fractions or options.
        DataError / DataErrors: missing or empty folder, bad cases, failed validation, too few
            groups to split. Nothing is written then.

    Example:
        >>> dl = build_datalist("busi", "data/busi", "data/busi/datalist.json", seed=1)  # doctest: +SKIP
        >>> dl["meta"]["counts"]["test"]["total"]                                     # doctest: +SKIP
        87
    """
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown layout '{layout}': choose one of {', '.join(LAYOUTS)}")
    try:
        check_fractions(val_frac, test_frac)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    if folds:
        val_frac = 0.0  # the folds are the validation sets
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder: give the JSON file to write")
    scanner = LAYOUTS[layout]
    known = set(inspect.signature(scanner).parameters) - {"root"}
    unknown = sorted(set(layout_options) - known)
    if unknown:
        raise ConfigError(
            f"layout {layout} has no option {', '.join(unknown)} (it takes {', '.join(sorted(known))})"
        )
    if "label_dir" in known and layout_options.get("label_dir") is None:  # generated labels live beside the datalist
        layout_options["label_dir"] = out.parent / f"{out.stem}_labels"
    scan = scanner(root, **layout_options)
    out_dir = out.parent
    check_can_write(out)  # before the (long) validation
    all_entries = [_entry(case, scan, out_dir) for case in scan.cases]
    if validate:  # before hashing, so every bad file is reported at once
        from sum_monai.datalists.validate import validate_datalist

        meta_labels = {"labels": scan.labels.to_meta(), "channels": scan.channels}
        report = validate_datalist(
            {"meta": meta_labels, "training": all_entries},
            base_dir=out_dir,
            progress=progress,
            name=f"{layout} dataset {scan.root}",
            loader=loader,
        )
    use_near = layout in NEAR_DUPS_BY_DEFAULT if near_dups is None else near_dups
    near_groups: list[list[int]] = []
    if use_near:
        from sum_monai.datalists.near_dups import hash_files, near_duplicate_groups

        hashes = hash_files([scan.root / c.images[0] for c in scan.cases], progress=progress)
        near_groups = near_duplicate_groups(hashes, near_dup_threshold)
    anchors = _group_anchors(scan, near_groups)
    classes_of = [c.cls for c in scan.cases]
    try:
        splits = assign_splits(classes_of, anchors, 0.0 if folds else val_frac, test_frac, seed)
        fold_of = _folds_outside_test(classes_of, anchors, splits, folds, seed) if folds else {}
    except ValueError as err:
        raise DataError(scan.root, str(err)) from err
    entries: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    for i, (entry, anchor, split) in enumerate(zip(all_entries, anchors, splits, strict=True)):
        entry["group"] = file_group_id(anchor)
        if i in fold_of:
            entry["fold"] = fold_of[i]
            split = "validation" if fold_of[i] == 0 else "training"
        entries[split].append(entry)
    classes = sorted({c.cls for c in scan.cases if c.cls is not None})
    meta: dict[str, Any] = {
        "layout": layout,
        "root": _relative_to(scan.root, out_dir),
        "seed": seed,
        "fractions": {
            "training": round(1 - val_frac - test_frac, 6),
            "validation": val_frac,
            "test": test_frac,
        },
        "fraction_step": round(1 / min(MAX_FOLDS, len(set(anchors))), 6),
        "classes": classes,
        "counts": _counts(entries, classes),
        "groups": len(set(anchors)),
        "near_duplicates": {
            "checked": use_near,
            "method": f"pHash {HASH_SIZE * HASH_SIZE} bit on {THUMB_SIZE}x{THUMB_SIZE} equalised thumbnail",
            "threshold_bits": near_dup_threshold if use_near else None,
            "n_groups": len(near_groups),
            "n_images": sum(len(g) for g in near_groups),
            "groups": [sorted(case_id(scan.cases[i].key) for i in g) for g in near_groups],
        },
        "labels": scan.labels.to_meta(),
        "case_id": {"scheme": "HMAC-SHA256 of the path below root, 12 hex", "salt": salt_source()},
        "validated": validate,
    }
    if validate:  # cases whose masks mark a lesion, per split (training refuses a split without any)
        meta["lesion_cases"] = {s: sum(e["case_id"] in report.lesion_case_ids for e in entries[s]) for s in SPLITS}
    if folds:
        meta["folds"] = _fold_meta(entries, classes, folds)
    if scan.channels:
        meta["channels"] = scan.channels
    meta.update(scan.notes)
    datalist: dict[str, Any] = {"meta": meta, **entries}
    from sum_monai.utils.atomic import atomic_write_text

    atomic_write_text(out, json.dumps(datalist, indent=2, ensure_ascii=False) + "\n")
    return datalist
