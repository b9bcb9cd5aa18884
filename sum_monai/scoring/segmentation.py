"""Per-case segmentation scores and their summary over cross-validation folds.

Scores come from MONAI's metric functions (``compute_dice``, ``compute_iou``,
``compute_hausdorff_distance``) on binary lesion masks; a lesion image whose prediction is empty
gets Dice and IoU 0 and no HD95 (undefined; the count of such images is reported instead). A
normal image (empty reference) is scored by one thing only: whether any lesion was predicted.
Summaries give the mean over all cases and, for cross-validation, the mean and standard deviation
of the per-fold means (the spread a new split of the same pool would show).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class CaseScore:
    """Scores of one case.

    Attributes:
        case_id: anonymised id.
        fold: cross-validation fold (0 when not cross-validated).
        cls: datalist class (``benign``, ``malignant``, ``normal``...).
        lesion: whether the reference holds a lesion.
        predicted: whether the prediction holds a lesion.
        dice, iou, hd95: for lesion images (hd95 NaN when the prediction is empty); NaN otherwise.
    """

    case_id: str
    fold: int
    cls: str
    lesion: bool
    predicted: bool
    dice: float = math.nan
    iou: float = math.nan
    hd95: float = math.nan


def score_case(
    case_id: str, fold: int, cls: str, pred: np.ndarray, label: np.ndarray, hd95: bool = True
) -> CaseScore:
    """Score a predicted binary mask against a reference mask of the same shape (spatial only).

    Args:
        hd95: also compute the 95th percentile Hausdorff distance (pixels of the scored grid; the
            slow part: leave it out when sweeping thresholds).
    """
    import torch
    from monai.metrics import compute_dice, compute_hausdorff_distance, compute_iou

    p, y = np.asarray(pred) > 0, np.asarray(label) > 0
    if p.shape != y.shape:
        raise ValueError(f"{case_id}: prediction {p.shape} and reference {y.shape} differ in shape")
    if not y.any():
        return CaseScore(case_id, fold, cls, False, bool(p.any()))
    tp = torch.from_numpy(p)[None, None].float()
    ty = torch.from_numpy(y)[None, None].float()
    dice = float(compute_dice(tp, ty, include_background=True, ignore_empty=False)[0, 0])
    iou = float(compute_iou(tp, ty, include_background=True, ignore_empty=False)[0, 0])
    hd = math.nan
    if hd95 and p.any():
        hd = float(compute_hausdorff_distance(tp, ty, include_background=True, percentile=95)[0, 0])
    return CaseScore(case_id, fold, cls, True, bool(p.any()), dice, iou, hd if math.isfinite(hd) else math.nan)


@dataclass
class Summary:
    """Mean figures of a set of case scores, overall and per fold.

    Attributes:
        figures: name -> value over all cases (``dice``, ``iou``, ``hd95``, ``dice_<class>``,
            ``missed`` share of lesion images with an empty prediction, ``normal_fp`` share of
            normal images with a predicted lesion).
        per_fold: name -> per-fold values, in fold order.
        counts: ``lesion`` and ``normal`` images.
    """

    figures: dict[str, float] = field(default_factory=dict)
    per_fold: dict[str, list[float]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def mean_sd(self, name: str) -> tuple[float, float]:
        """Mean and sample standard deviation over folds of one figure (NaN where undefined)."""
        values = [v for v in self.per_fold.get(name, []) if not math.isnan(v)]
        if not values:
            return math.nan, math.nan
        return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0

    def text(self, name: str, digits: int = 3) -> str:
        """``mean +- sd`` of a figure over folds."""
        mean, sd = self.mean_sd(name)
        return "-" if math.isnan(mean) else f"{mean:.{digits}f} +- {sd:.{digits}f}"


def _figures(scores: Sequence[CaseScore], classes: Iterable[str]) -> dict[str, float]:
    lesion = [s for s in scores if s.lesion]
    normal = [s for s in scores if not s.lesion]

    def mean(values: list[float]) -> float:
        values = [v for v in values if not math.isnan(v)]
        return float(np.mean(values)) if values else math.nan

    out = {
        "dice": mean([s.dice for s in lesion]),
        "iou": mean([s.iou for s in lesion]),
        "hd95": mean([s.hd95 for s in lesion]),
        "missed": mean([float(not s.predicted) for s in lesion]),
        "normal_fp": mean([float(s.predicted) for s in normal]),
    }
    for cls in classes:
        out[f"dice_{cls}"] = mean([s.dice for s in lesion if s.cls == cls])
    return out


def summarise(scores: Sequence[CaseScore]) -> Summary:
    """Figures over all cases and per fold."""
    classes = sorted({s.cls for s in scores if s.lesion and s.cls})
    folds = sorted({s.fold for s in scores})
    summary = Summary(
        figures=_figures(scores, classes),
        counts={"lesion": sum(s.lesion for s in scores), "normal": sum(not s.lesion for s in scores)},
    )
    per = [_figures([s for s in scores if s.fold == k], classes) for k in folds]
    summary.per_fold = {name: [p[name] for p in per] for name in summary.figures}
    return summary
