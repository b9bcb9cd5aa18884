"""The cross-validation report: lever tables (mean +- sd over folds), the operating point, plots.

Two kinds, chosen by the datalist: lesion segmentation (ultrasound: Dice, IoU, HD95 per class and
the normal images with a predicted lesion) and, for datalists carrying reference circles
(``meta.lesions``, mini-MIAS), mammography CAD figures (FROC, film class) on top. The report is
written as ``cv_report.json`` and ``cv_report.md`` into the CV folder, with ``trade_off.png``
(ultrasound) or ``froc.png`` (mammography).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from sum_monai.scoring.detection import (
    FILM_CLASSES,
    Circle,
    FilmResult,
    film_class_scores,
    film_result,
    froc,
    operating_point,
)
from sum_monai.scoring.levers import (
    THRESHOLDS,
    ComponentCache,
    PostProcessing,
    nested_operating_point,
    pick_threshold,
    trade_off_curve,
)
from sum_monai.scoring.segmentation import Summary, summarise
from sum_monai.utils.atomic import atomic_write_text
from sum_monai.workflows.oof import OOFCase

SEGMENTATION_FIGURES = ("dice", "iou", "hd95", "dice_benign", "dice_malignant", "missed", "normal_fp")
FIGURE_NAMES = {
    "dice": "lesion Dice", "iou": "IoU", "hd95": "HD95 px", "dice_benign": "Dice benign",
    "dice_malignant": "Dice malignant", "missed": "lesions missed", "normal_fp": "normals marked",
}  # fmt: skip
#: Island filter tried as a lever: components under this share of the image are dropped.
ISLAND_FRACTION = 0.002


@dataclass
class LeverRow:
    """One row of the lever table."""

    name: str
    summary: Summary
    thresholds: dict[int, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "figures": {k: _finite(v) for k, v in self.summary.figures.items()},
            "mean_sd": {k: [_finite(x) for x in self.summary.mean_sd(k)] for k in self.summary.figures},
            "per_fold": {k: [_finite(x) for x in v] for k, v in self.summary.per_fold.items()},
            "counts": self.summary.counts,
            "thresholds": {str(k): v for k, v in self.thresholds.items()},
        }


def _finite(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(float(value), 4)


def _better(candidate: Summary, current: Summary) -> bool:
    """Keep a lever when it raises the mean lesion Dice over folds, or keeps it (within 0.002) and
    marks fewer normal images."""
    (d_new, _), (d_old, _) = candidate.mean_sd("dice"), current.mean_sd("dice")
    (n_new, _), (n_old, _) = candidate.mean_sd("normal_fp"), current.mean_sd("normal_fp")
    if d_new > d_old + 1e-9:
        return True
    return d_new >= d_old - 0.002 and not math.isnan(n_new) and n_new < n_old


def segmentation_rows(cache: ComponentCache, max_normal_fp: float) -> tuple[list[LeverRow], PostProcessing]:
    """Lever rows, each tried on top of the levers kept so far, ending with the nested operating
    point; and the post-processing chosen for shipping (its threshold picked on every out-of-fold case)."""
    chosen = PostProcessing()
    current = summarise(cache.scores(chosen))
    rows = [LeverRow("argmax", current)]
    levers = (
        ("+ mirror pass", lambda pp: replace(pp, mirror=True)),
        (f"+ islands < {100 * ISLAND_FRACTION:g} % dropped", lambda pp: replace(pp, min_fraction=ISLAND_FRACTION)),
    )
    for name, make in levers:
        candidate = make(chosen)
        summary = summarise(cache.scores(candidate))
        kept = _better(summary, current)
        rows.append(LeverRow(f"{name} ({'kept' if kept else 'not kept'})", summary))
        if kept:
            chosen, current = candidate, summary
    scores, per_fold = nested_operating_point(cache, chosen, max_normal_fp)
    rows.append(LeverRow(f"+ lesion score threshold (nested CV, normals <= {max_normal_fp:.0%})", summarise(scores), per_fold))
    chosen = replace(chosen, threshold=pick_threshold(cache, chosen, cache.cases, max_normal_fp))
    return rows, chosen


def format_rows(rows: Sequence[LeverRow], figures: Sequence[str] = SEGMENTATION_FIGURES) -> str:
    """Markdown table of lever rows, ``mean +- sd`` over folds."""
    head = "| lever | " + " | ".join(FIGURE_NAMES.get(f, f) for f in figures) + " |"
    sep = "|---" * (len(figures) + 1) + "|"
    lines = [head, sep]
    for row in rows:
        cells = [row.summary.text(f, 1 if f == "hd95" else 3) for f in figures]
        lines.append(f"| {row.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_trade_off(curve: list[dict[str, float]], path: Path) -> Path:
    """Lesion images detected and Dice against normal images marked, one point per threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    x = [r["normal_fp"] for r in curve]
    ax.plot(x, [r["detected"] for r in curve], "o-", label="lesion images with a predicted lesion")
    ax.plot(x, [r["dice"] for r in curve], "s-", label="mean lesion Dice")
    for r in curve:
        ax.annotate(f"{r['threshold']:g}", (r["normal_fp"], r["detected"]), fontsize=7, xytext=(2, 3), textcoords="offset points")
    ax.set_xlabel("normal images with a predicted lesion")
    ax.set_ylabel("share / Dice")
    ax.set_title("operating points (lesion score threshold), out-of-fold")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    from sum_monai.utils.atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path


def segmentation_report(cases: Sequence[OOFCase], out_dir: Path, max_normal_fp: float = 0.15) -> dict[str, Any]:
    """Lever table, operating point and trade-off curve of a lesion-segmentation CV."""
    cache = ComponentCache(cases)
    rows, chosen = segmentation_rows(cache, max_normal_fp)
    curve = trade_off_curve(cache, replace(chosen, threshold=0.5))
    plot_trade_off(curve, out_dir / "trade_off.png")
    table = format_rows(rows)
    folds = sorted({c.fold for c in cases})
    report = {
        "kind": "segmentation",
        "folds": folds,
        "cases": len(cases),
        "rows": [r.to_json() for r in rows],
        "trade_off": curve,
        "chosen": {"mirror": chosen.mirror, "min_fraction": chosen.min_fraction, "threshold": chosen.threshold,
                   "rule": f"smallest threshold with normal images marked <= {max_normal_fp:.0%} over all out-of-fold cases"},
        "table": table + f"\n\nshipped post-processing: {chosen.describe()} (threshold picked on every out-of-fold case)",
    }
    return report


# --------------------------------------------------------------------------------------------------
# mammography CAD
# --------------------------------------------------------------------------------------------------

#: FP-per-film budget of the operating point and of the reported sensitivity.
FP_BUDGET = 0.5
#: Share of normal films given a lesion that the operating point may reach.
NORMAL_BUDGET = 0.30
GROUPS = ("mass", "calcification", "other")


def circles_of(case_id: str, width: int, flipped: bool, lesions: dict[str, list[dict[str, Any]]]) -> list[Circle]:
    """Reference circles of a case on its loaded grid (array axes: column, row; mirrored when the
    loading flipped the film, ``width`` columns wide)."""
    out = []
    for lesion in lesions.get(case_id, []):
        col = width - 1 - lesion["col"] if flipped else lesion["col"]
        out.append(Circle((float(col), float(lesion["row"])), float(lesion["radius"]), lesion["group"], lesion["severity"]))
    return out


def film_results(cases: Sequence[OOFCase], lesions: dict[str, list[dict[str, Any]]], mirror: bool) -> list[FilmResult]:
    """Scored components of every film against its circles."""
    return [
        film_result(c.case_id, c.fold, c.cls, circles_of(c.case_id, c.label.shape[0], c.flipped, lesions), c.probs(mirror))
        for c in cases
    ]


def _pick_detection_threshold(films: Sequence[FilmResult]) -> float:
    """Smallest threshold with FP per film <= budget and normal films marked <= budget."""
    for t in THRESHOLDS:
        _, fp = operating_point(films, t)
        if fp <= FP_BUDGET and film_class_scores(films, t).normal_with_lesion <= NORMAL_BUDGET:
            return t
    return THRESHOLDS[-1]


def _detection_figures(films: Sequence[FilmResult], t: float) -> dict[str, float]:
    sens, fp = operating_point(films, t)
    fc = film_class_scores(films, t)
    out = {"sensitivity": sens, "fp_per_film": fp, "balanced_accuracy": fc.balanced_accuracy,
           "normal_with_lesion": fc.normal_with_lesion, "malignant_auc": fc.malignant_auc}  # fmt: skip
    for g in GROUPS:
        out[f"sensitivity_{g}"] = operating_point(films, t, g)[0]
    return out


def detection_report(
    cases: Sequence[OOFCase], lesions: dict[str, list[dict[str, Any]]], out_dir: Path
) -> dict[str, Any]:
    """FROC (pooled), the nested operating point per fold, film class and Dice against circles."""
    result: dict[str, Any] = {"kind": "detection", "cases": len(cases), "folds": sorted({c.fold for c in cases})}
    variants = {}
    for mirror in (False, True):
        films = film_results(cases, lesions, mirror)
        folds = sorted({f.fold for f in films})
        per_fold, chosen, confusion = [], {}, np.zeros((3, 3), dtype=np.int64)
        for k in folds:
            inner = [f for f in films if f.fold != k]
            outer = [f for f in films if f.fold == k]
            chosen[k] = _pick_detection_threshold(inner)
            per_fold.append(_detection_figures(outer, chosen[k]))
            confusion += film_class_scores(outer, chosen[k]).confusion
        names = list(per_fold[0])
        variants["mirror" if mirror else "plain"] = {
            "thresholds": {str(k): v for k, v in chosen.items()},
            "per_fold": {n: [_finite(p[n]) for p in per_fold] for n in names},
            "mean_sd": {n: _mean_sd([p[n] for p in per_fold]) for n in names},
            "confusion": confusion.tolist(),
            "froc": [
                {"threshold": t, "sensitivity": s, "fp_per_film": fp,
                 **{f"sensitivity_{g}": operating_point(films, t, g)[0] for g in GROUPS}}
                for t, s, fp in froc(films, THRESHOLDS)
            ],
        }
    result["variants"] = variants
    best = max(variants, key=lambda v: variants[v]["mean_sd"]["sensitivity"][0] or 0.0)
    result["chosen"] = best
    ship = _pick_detection_threshold(film_results(cases, lesions, best == "mirror"))
    result["shipping"] = {"mirror": best == "mirror", "min_fraction": 0.0, "threshold": ship,
                          "rule": f"smallest threshold with <= {FP_BUDGET} false positives per film and <= {NORMAL_BUDGET:.0%} normal films marked, over all out-of-fold films"}  # fmt: skip
    cache = ComponentCache(cases)
    base = PostProcessing(mirror=best == "mirror")
    thresholds = {int(k): v for k, v in variants[best]["thresholds"].items()}
    scores = []
    for k, t in thresholds.items():
        scores += cache.scores(replace(base, threshold=t), cases=[c for c in cases if c.fold == k])
    result["segmentation"] = LeverRow("Dice against circles", summarise(scores), thresholds).to_json()
    plot_froc(variants[best]["froc"], out_dir / "froc.png")
    result["table"] = format_detection(result)
    return result


def _mean_sd(values: list[float]) -> list[float | None]:
    v = [x for x in values if not (isinstance(x, float) and math.isnan(x))]
    if not v:
        return [None, None]
    return [round(float(np.mean(v)), 4), round(float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, 4)]


def _ms(pair: list[float | None], digits: int = 3) -> str:
    return "-" if pair[0] is None else f"{pair[0]:.{digits}f} +- {pair[1]:.{digits}f}"


def format_detection(result: dict[str, Any]) -> str:
    """Markdown tables of a detection report."""
    lines = ["| variant | sensitivity | FP / film | masses | calcifications | other | balanced acc. | normals marked | malignant AUC |", "|---" * 9 + "|"]
    for name, v in result["variants"].items():
        m = v["mean_sd"]
        lines.append(
            f"| {name} | {_ms(m['sensitivity'])} | {_ms(m['fp_per_film'], 2)} | {_ms(m['sensitivity_mass'])} | "
            f"{_ms(m['sensitivity_calcification'])} | {_ms(m['sensitivity_other'])} | {_ms(m['balanced_accuracy'])} | "
            f"{_ms(m['normal_with_lesion'])} | {_ms(m['malignant_auc'])} |"
        )
    best = result["variants"][result["chosen"]]
    lines += ["", f"FROC ({result['chosen']}, pooled out-of-fold):", "",
              "| threshold | sensitivity | masses | calcifications | other | FP / film |", "|---" * 6 + "|"]  # fmt: skip
    for r in best["froc"]:
        lines.append(
            f"| {r['threshold']:g} | {r['sensitivity']:.3f} | {r['sensitivity_mass']:.3f} | "
            f"{r['sensitivity_calcification']:.3f} | {r['sensitivity_other']:.3f} | {r['fp_per_film']:.2f} |"
        )
    lines += ["", "film class (rows truth, columns predicted; summed over folds at each fold's threshold):", "",
              "| | " + " | ".join(FILM_CLASSES) + " |", "|---" * 4 + "|"]  # fmt: skip
    for name, row in zip(FILM_CLASSES, best["confusion"], strict=True):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    seg = result["segmentation"]["mean_sd"]
    lines += ["", f"Dice against circles (secondary): {_ms(seg['dice'])}, IoU {_ms(seg['iou'])}"]
    return "\n".join(lines)


def plot_froc(rows: list[dict[str, float]], path: Path) -> Path:
    """FROC curve: sensitivity (all, per group) against false positives per film."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sum_monai.utils.atomic import atomic_path

    fig, ax = plt.subplots(figsize=(5, 4))
    x = [r["fp_per_film"] for r in rows]
    ax.plot(x, [r["sensitivity"] for r in rows], "o-", label="all lesions")
    for g in GROUPS:
        ax.plot(x, [r[f"sensitivity_{g}"] for r in rows], ".--", label=g)
    ax.axvline(FP_BUDGET, color="grey", lw=0.8)
    ax.set_xlabel("false-positive components per film")
    ax.set_ylabel("lesion sensitivity")
    ax.set_ylim(0, 1)
    ax.set_title("FROC, out-of-fold")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path


def write_report(report: dict[str, Any], out_dir: Path, title: str) -> tuple[Path, Path]:
    """``cv_report.json`` and ``cv_report.md``."""
    js = out_dir / "cv_report.json"
    md = out_dir / "cv_report.md"
    atomic_write_text(js, json.dumps(report, indent=2, default=_finite) + "\n")
    atomic_write_text(md, f"# {title}\n\n{report['table']}\n")
    return js, md
