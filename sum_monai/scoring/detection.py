"""Mammography CAD scores: lesion detection (FROC) and film class, from scored lesion components.

How CAD is judged (and how the issue of the mini-MIAS model asks for it):

* **a lesion is found** when a predicted lesion component touches its reference circle (any
  overlap with the disc); a component touching no circle is a **false positive**. Sweeping the
  score a component must reach gives sensitivity against false positives per film: the FROC.
  Sensitivity is reported for all lesions and per group (masses: CIRC/SPIC/MISC,
  calcifications: CALC, other: ARCH/ASYM).
* **film class** read from the kept components: normal (none), benign, or malignant (the worst
  component class); scored as a confusion matrix and balanced accuracy, with the share of normal
  films given any lesion; and from the probabilities: the film's highest malignant probability
  against malignant-vs-rest (ROC AUC).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FILM_CLASSES = ("normal", "benign", "malignant")


@dataclass(frozen=True)
class Circle:
    """A reference lesion on the scored array grid.

    Attributes:
        center: centre index along array axis 0 and 1 (for MONAI's 2D layout ``(W, H)``: column, row).
        radius: radius in pixels.
        group: ``mass``, ``calcification`` or ``other``.
        severity: ``B`` or ``M``.
    """

    center: tuple[float, float]
    radius: float
    group: str
    severity: str

    def disc(self, shape: tuple[int, ...]) -> np.ndarray:
        """Boolean disc on a grid of ``shape``."""
        a, b = np.ogrid[: shape[0], : shape[1]]
        return (a - self.center[0]) ** 2 + (b - self.center[1]) ** 2 <= self.radius**2


@dataclass(frozen=True)
class Candidate:
    """A predicted component: score, class, and which reference circles it touches."""

    score: float
    label: int
    touches: tuple[int, ...]


@dataclass(frozen=True)
class FilmResult:
    """Candidates of one film with its reference."""

    case_id: str
    fold: int
    truth: str
    circles: tuple[Circle, ...]
    candidates: tuple[Candidate, ...]
    malignant_score: float


def film_result(case_id: str, fold: int, truth: str, circles: Sequence[Circle], probs: np.ndarray) -> FilmResult:
    """Score one film: the components of ``probs`` (C x H x W softmax) against ``circles``."""
    from sum_monai.bundle.bundle_scripts.lesions import scored_components

    shape = probs.shape[1:]
    discs = [c.disc(shape) for c in circles]
    candidates = tuple(
        Candidate(c.score, c.label, tuple(i for i, d in enumerate(discs) if c.touches(d)))
        for c in scored_components(probs)
    )
    malignant = float(probs[2].max()) if probs.shape[0] > 2 else 0.0
    return FilmResult(case_id, fold, truth, tuple(circles), candidates, malignant)


def operating_point(films: Sequence[FilmResult], threshold: float, group: str | None = None) -> tuple[float, float]:
    """(sensitivity, false positives per film) when components need ``threshold`` to count.

    Args:
        group: score only the lesions of this group (``mass``, ``calcification``, ``other``);
            false positives are always counted over all films.
    """
    found = total = fp = 0
    for film in films:
        kept = [c for c in film.candidates if c.score >= threshold]
        hit = {i for c in kept for i in c.touches}
        for i, circle in enumerate(film.circles):
            if group is None or circle.group == group:
                total += 1
                found += i in hit
        fp += sum(1 for c in kept if not c.touches)
    return (found / total if total else math.nan), fp / max(len(films), 1)


def froc(films: Sequence[FilmResult], thresholds: Sequence[float], group: str | None = None) -> list[tuple[float, float, float]]:
    """``(threshold, sensitivity, FP per film)`` at each threshold."""
    return [(t, *operating_point(films, t, group)) for t in thresholds]


def film_class(film: FilmResult, threshold: float) -> str:
    """normal / benign / malignant read from the components that reach ``threshold``."""
    labels = [c.label for c in film.candidates if c.score >= threshold]
    return FILM_CLASSES[max(labels, default=0)]


@dataclass(frozen=True)
class FilmClassScores:
    """Film-class figures at one threshold."""

    confusion: np.ndarray
    balanced_accuracy: float
    normal_with_lesion: float
    malignant_auc: float


def film_class_scores(films: Sequence[FilmResult], threshold: float) -> FilmClassScores:
    """Confusion matrix (rows truth, columns prediction, in :data:`FILM_CLASSES` order), balanced
    accuracy over the classes present, normal films with any kept lesion, malignant-vs-rest AUC."""
    from sklearn.metrics import roc_auc_score

    index = {c: i for i, c in enumerate(FILM_CLASSES)}
    confusion = np.zeros((3, 3), dtype=np.int64)
    for film in films:
        confusion[index[film.truth], index[film_class(film, threshold)]] += 1
    present = confusion.sum(axis=1) > 0
    recalls = np.diag(confusion)[present] / confusion.sum(axis=1)[present]
    normals = [f for f in films if f.truth == "normal"]
    normal_fp = float(np.mean([film_class(f, threshold) != "normal" for f in normals])) if normals else math.nan
    y = [f.truth == "malignant" for f in films]
    auc = float(roc_auc_score(y, [f.malignant_score for f in films])) if 0 < sum(y) < len(y) else math.nan
    return FilmClassScores(confusion, float(recalls.mean()) if len(recalls) else math.nan, normal_fp, auc)
