"""Breast density from tissue segmentations: percent fibroglandular tissue and its BI-RADS ranking.

Percent density is the fibroglandular area over the breast area (fat + fibroglandular; the
pectoral muscle and background are not breast), computed from a label map with
0 background, 1 fat, 2 fibroglandular, 3 pectoral (the DDSM tissue recipe, configs/ddsm_tissue.json).
Its agreement with the BI-RADS density category (A < B < C < D) is Spearman's rank correlation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

FAT, FIBROGLANDULAR = 1, 2
#: BI-RADS density categories in order.
CATEGORIES = ("A", "B", "C", "D")


def percent_fibroglandular(label_map: np.ndarray, fat: int = FAT, fibroglandular: int = FIBROGLANDULAR) -> float:
    """100 x fibroglandular / (fat + fibroglandular) pixels; NaN when the map holds no breast tissue.

    Example:
        >>> round(percent_fibroglandular(np.array([[1, 1, 2, 0], [3, 2, 1, 1]])), 2)
        33.33
    """
    fgt = int(np.count_nonzero(label_map == fibroglandular))
    breast = fgt + int(np.count_nonzero(label_map == fat))
    return 100.0 * fgt / breast if breast else float("nan")


@dataclass
class DensityReport:
    """Per-image densities and their agreement with the categories."""

    rows: list[dict[str, object]]
    spearman_predicted: float
    spearman_reference: float
    pearson_predicted_vs_reference: float
    mean_abs_difference: float


def density_report(
    predicted: Mapping[str, float], reference: Mapping[str, float], category: Mapping[str, str]
) -> DensityReport:
    """Rank agreement of predicted (and reference) percent density with the BI-RADS category.

    Args:
        predicted: ``{case_id: percent}`` from predicted label maps.
        reference: ``{case_id: percent}`` from the expert labels.
        category: ``{case_id: "A".."D"}``.
    """
    from scipy.stats import pearsonr, spearmanr

    cases = sorted(c for c in predicted if c in category and not np.isnan(predicted[c]))
    rank = [CATEGORIES.index(category[c]) + 1 for c in cases]
    pred = [predicted[c] for c in cases]
    ref = [reference.get(c, float("nan")) for c in cases]
    rows = [
        {"case_id": c, "category": category[c], "predicted_percent": p, "reference_percent": r}
        for c, p, r in zip(cases, pred, ref, strict=True)
    ]

    def rho(values: Sequence[float]) -> float:
        ok = [(v, k) for v, k in zip(values, rank, strict=True) if not np.isnan(v)]
        if len(ok) < 3 or len({k for _, k in ok}) < 2:
            return float("nan")
        return float(spearmanr([v for v, _ in ok], [k for _, k in ok]).statistic)

    both = [(p, r) for p, r in zip(pred, ref, strict=True) if not np.isnan(r)]
    pearson = float(pearsonr(*zip(*both, strict=True)).statistic) if len(both) >= 3 else float("nan")
    mad = float(np.mean([abs(p - r) for p, r in both])) if both else float("nan")
    return DensityReport(rows, rho(pred), rho(ref), pearson, mad)
