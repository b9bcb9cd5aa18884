"""Per-case and summary metric tables from what ``monai.handlers.MetricsSaver`` wrote."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from sum_monai.utils.atomic import atomic_write_text

#: MetricsSaver file stem -> column name in our tables.
METRIC_NAMES = {
    "val_mean_dice": "dice",
    "val_mean_iou": "iou",
    "val_precision": "precision",
    "val_recall": "recall",
    "val_f1": "f1",
    "val_hd95": "hd95",
    "val_normal_marked": "normal_marked",
}


def read_raw_metrics(eval_dir: Path, class_names: Sequence[str]) -> dict[str, dict[str, float]]:
    """``{case_id: {"dice": .., "dice_benign": .., ...}}`` from the ``*_raw.csv`` files.

    Args:
        eval_dir: the evaluation ``output_dir``.
        class_names: names of the scored (non-background) classes in channel order; with more
            than one class, per-class columns ``<metric>_<class>`` are added to the case mean.
    """
    table: dict[str, dict[str, float]] = {}
    for stem, name in METRIC_NAMES.items():
        path = eval_dir / f"{stem}_raw.csv"
        if not path.is_file():
            continue
        with path.open() as f:
            for row in csv.DictReader(f):
                case = table.setdefault(row["filename"], {})
                case[name] = float(row["mean"])
                if len(class_names) > 1 and f"class{len(class_names) - 1}" in row:  # per-class metrics only
                    for i, cname in enumerate(class_names):
                        case[f"{name}_{cname}"] = float(row[f"class{i}"])
    return table


def nanmean(values: Sequence[float]) -> float:
    """Mean of the values that are numbers (NaN for none)."""
    good = [v for v in values if v is not None and not math.isnan(v)]
    return sum(good) / len(good) if good else math.nan


def summarise(per_case: Mapping[str, Mapping[str, float]], groups: Mapping[str, str]) -> dict[str, dict[str, float]]:
    """Mean of every metric over all cases and per group (e.g. benign / malignant / normal).

    A case without the structure (empty label) has NaN Dice and is left out of that mean, as
    MONAI does; ``n`` counts the cases with a number for ``dice``.
    """
    out: dict[str, dict[str, float]] = {}
    names = sorted({k for row in per_case.values() for k in row if isinstance(row[k], float)})
    for group in ["all", *sorted(set(groups.values()))]:
        cases = [c for c in per_case if group == "all" or groups.get(c) == group]
        if not cases:
            continue
        stats = {name: nanmean([per_case[c].get(name, math.nan) for c in cases]) for name in names}
        stats["n"] = float(len(cases))
        out[group] = stats
    return out


def write_per_case_csv(per_case: Mapping[str, Mapping[str, object]], path: Path) -> Path:
    """One row per case (``case_id`` first), columns sorted."""
    columns = sorted({k for row in per_case.values() for k in row})
    lines = [",".join(["case_id", *columns])]
    for case, row in sorted(per_case.items()):
        cells = []
        for col in columns:
            v = row.get(col, "")
            cells.append(f"{v:.4f}" if isinstance(v, float) else str(v))
        lines.append(",".join([case, *cells]))
    return atomic_write_text(path, "\n".join(lines) + "\n")


def write_json(data: object, path: Path) -> Path:
    """JSON with NaN written as null."""

    def clean(v: object) -> object:
        if isinstance(v, float) and math.isnan(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    return atomic_write_text(path, json.dumps(clean(data), indent=2) + "\n")


def format_summary(summary: Mapping[str, Mapping[str, float]], metrics: Sequence[str]) -> str:
    """A plain-text table: one row per group, one column per metric."""
    head = ["group", "n", *metrics]
    rows = [head]
    for group, stats in summary.items():
        cells = [group, str(int(stats.get("n", 0)))]
        for m in metrics:
            v = stats.get(m, math.nan)
            cells.append("-" if v is None or math.isnan(v) else f"{v:.3f}" if m != "hd95" else f"{v:.1f}")
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
