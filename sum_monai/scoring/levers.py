"""Post-processing levers scored on out-of-fold predictions, and the operating point chosen by nested CV.

A :class:`PostProcessing` is one choice of the levers that need no retraining: the test-time
mirror, the smallest component kept (a fraction of the image) and the score a component must
reach to be kept (:class:`scripts.lesions.KeepConfidentLesions`; 0.5 keeps the whole argmax).
The score threshold is an operating point: it trades missed lesions against lesions marked on
normal images. It is chosen by **nested** cross-validation: for each fold, the threshold is picked
on the out-of-fold predictions of the *other* folds (the smallest one whose normal images with a
predicted lesion stay within ``max_normal_fp``) and applied to the fold, so no figure reported
for a fold was tuned on that fold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from sum_monai.bundle.bundle_scripts.lesions import Lesion, scored_components
from sum_monai.scoring.segmentation import CaseScore, score_case, summarise
from sum_monai.workflows.oof import OOFCase

#: Component score thresholds tried for the operating point.
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99)


@dataclass(frozen=True)
class PostProcessing:
    """One choice of the post-processing levers.

    Attributes:
        mirror: average with the left-right (ultrasound) / up-down (mammography) mirror pass.
        min_fraction: drop components smaller than this fraction of the image.
        threshold: keep components whose highest lesion probability reaches this (0.5: all).
    """

    mirror: bool = False
    min_fraction: float = 0.0
    threshold: float = 0.5

    def describe(self) -> str:
        parts = ["mirror" if self.mirror else "plain"]
        if self.min_fraction:
            parts.append(f"islands < {100 * self.min_fraction:.2g} % dropped")
        if self.threshold > 0.5:
            parts.append(f"lesion score >= {self.threshold:g}")
        return ", ".join(parts)


class ComponentCache:
    """Scored components of every case, computed once per mirror setting."""

    def __init__(self, cases: Sequence[OOFCase]) -> None:
        self.cases = list(cases)
        self._cache: dict[tuple[str, bool], list[Lesion]] = {}

    def components(self, case: OOFCase, mirror: bool) -> list[Lesion]:
        key = (case.case_id, mirror)
        if key not in self._cache:
            self._cache[key] = scored_components(case.probs(mirror))
        return self._cache[key]

    def mask(self, case: OOFCase, pp: PostProcessing) -> np.ndarray:
        """Binary lesion mask of ``case`` under ``pp``."""
        out = np.zeros(case.label.shape, dtype=bool)
        min_size = pp.min_fraction * case.label.size
        for lesion in self.components(case, pp.mirror):
            if lesion.score >= pp.threshold and lesion.size >= min_size:
                lesion.paint(out)
        return out

    def scores(self, pp: PostProcessing, hd95: bool = True, cases: Sequence[OOFCase] | None = None) -> list[CaseScore]:
        """Segmentation scores of ``cases`` (default all) under ``pp``."""
        return [
            score_case(c.case_id, c.fold, c.cls, self.mask(c, pp), c.label, hd95=hd95)
            for c in (self.cases if cases is None else cases)
        ]


def pick_threshold(cache: ComponentCache, base: PostProcessing, cases: Sequence[OOFCase], max_normal_fp: float) -> float:
    """Smallest threshold of :data:`THRESHOLDS` whose normal images with a lesion stay within ``max_normal_fp``."""
    for t in THRESHOLDS:
        summary = summarise(cache.scores(replace(base, threshold=t), hd95=False, cases=cases))
        if not summary.counts["normal"] or summary.figures["normal_fp"] <= max_normal_fp:
            return t
    return THRESHOLDS[-1]


def nested_operating_point(
    cache: ComponentCache, base: PostProcessing, max_normal_fp: float
) -> tuple[list[CaseScore], dict[int, float]]:
    """Scores of every case with the threshold of its fold picked on the other folds.

    Returns:
        the case scores and the threshold used per fold.
    """
    folds = sorted({c.fold for c in cache.cases})
    chosen: dict[int, float] = {}
    scores: list[CaseScore] = []
    for k in folds:
        inner = [c for c in cache.cases if c.fold != k]
        chosen[k] = pick_threshold(cache, base, inner, max_normal_fp)
        scores += cache.scores(replace(base, threshold=chosen[k]), cases=[c for c in cache.cases if c.fold == k])
    return scores, chosen


def trade_off_curve(cache: ComponentCache, base: PostProcessing) -> list[dict[str, float]]:
    """Pooled out-of-fold figures at every threshold: lesion Dice, lesion images detected, normal images marked."""
    rows = []
    for t in THRESHOLDS:
        s = summarise(cache.scores(replace(base, threshold=t), hd95=False))
        rows.append(
            {"threshold": t, "dice": s.figures["dice"], "detected": 1 - s.figures["missed"], "normal_fp": s.figures["normal_fp"]}
        )
    return rows

