"""Seeded, group-aware, stratified train / validation / test split.

The split itself is scikit-learn's :class:`~sklearn.model_selection.StratifiedGroupKFold`: the
groups (patients, near-duplicate sets) are dealt into ``n_folds`` folds of about equal size with
the class mix of each fold as close to the whole as the groups allow; whole folds then go to test,
validation and training. A group therefore never straddles two splits, and the fractions are met
in steps of ``1 / n_folds`` (``n_folds = min(20, number of groups)``: 5% steps for 20+ groups).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

SPLITS = ("training", "validation", "test")
#: Most folds used: sets the resolution of the fractions (1/20 = 5%).
MAX_FOLDS = 20


def check_fractions(val_frac: float, test_frac: float) -> None:
    """Raise ValueError unless 0 <= val, test and val + test < 1 (training keeps something)."""
    for name, frac in (("validation", val_frac), ("test", test_frac)):
        if not 0.0 <= frac < 1.0:
            raise ValueError(f"{name} fraction must be in [0, 1), got {frac}")
    if val_frac + test_frac >= 1.0:
        raise ValueError(f"validation + test fractions must be below 1, got {val_frac} + {test_frac}")


def fold_counts(n_folds: int, val_frac: float, test_frac: float) -> tuple[int, int]:
    """Folds given to validation and test: nearest whole folds, at least one for a non-zero fraction.

    Raises:
        ValueError: too few folds to give training, validation and test at least one each.

    Example:
        >>> fold_counts(20, 0.15, 0.15), fold_counts(20, 0.0, 0.1), fold_counts(4, 0.15, 0.15)
        ((3, 3), (0, 2), (1, 1))
    """
    n_val = math.floor(val_frac * n_folds + 0.5)
    n_test = math.floor(test_frac * n_folds + 0.5)
    n_val = max(n_val, 1) if val_frac > 0 else 0
    n_test = max(n_test, 1) if test_frac > 0 else 0
    if n_val + n_test >= n_folds:
        need = 1 + (val_frac > 0) + (test_frac > 0)
        raise ValueError(
            f"only {n_folds} independent group(s) (patients / near-duplicate sets): at least {need} "
            f"are needed for these fractions (validation {val_frac}, test {test_frac})"
        )
    return n_val, n_test


def assign_folds(classes: Sequence[str | None], groups: Sequence[str], n_folds: int, seed: int = 0) -> list[int]:
    """Cross-validation fold (0 .. ``n_folds`` - 1) of each case: groups whole, classes balanced.

    The same :class:`~sklearn.model_selection.StratifiedGroupKFold` as :func:`assign_splits`, with
    ``n_folds`` folds that each become one validation fold of a cross-validation.

    Raises:
        ValueError: fewer than 2 folds, or fewer groups than folds.

    Example:
        >>> assign_folds(["a", "a", "b", "b"], ["g1", "g1", "g2", "g3"], n_folds=2)[:2]
        [1, 1]
    """
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(set(groups))
    if n_folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {n_folds}")
    if n_groups < n_folds:
        raise ValueError(f"only {n_groups} independent group(s) (patients / near-duplicate sets) for {n_folds} folds")
    n = len(groups)
    y = np.array(["" if c is None else str(c) for c in classes])
    if np.unique(y, return_counts=True)[1].max() < n_folds:
        y = np.zeros(n, dtype=np.int64)
    folds = np.zeros(n, dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for fold, (_, members) in enumerate(splitter.split(np.zeros((n, 1)), y, np.asarray(groups))):
            folds[members] = fold
    return [int(f) for f in folds]


def assign_splits(
    classes: Sequence[str | None],
    groups: Sequence[str],
    val_frac: float = 0.15,
    test_frac: float = 0.15,
    seed: int = 0,
) -> list[str]:
    """Give each case a split name, keeping groups whole and classes balanced.

    Args:
        classes: stratification class per case (None everywhere: no stratification).
        groups: group id per case; cases sharing an id land in the same split.
        val_frac, test_frac: wanted fractions of cases (0 allowed).
        seed: random seed; the same inputs and seed give the same split.

    Returns:
        ``"training"``, ``"validation"`` or ``"test"`` per case.

    Raises:
        ValueError: bad fractions or too few groups.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    check_fractions(val_frac, test_frac)
    n = len(groups)
    if n != len(classes):
        raise ValueError("classes and groups must have the same length")
    n_groups = len(set(groups))
    n_folds = min(MAX_FOLDS, n_groups)
    if val_frac == 0 and test_frac == 0:
        return ["training"] * n
    n_val, n_test = fold_counts(n_folds, val_frac, test_frac)
    y = np.array(["" if c is None else str(c) for c in classes])
    if np.unique(y, return_counts=True)[1].max() < n_folds:  # too few cases to stratify at all
        y = np.zeros(n, dtype=np.int64)
    folds = np.zeros(n, dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # rare classes with fewer members than folds are expected
        warnings.simplefilter("ignore", UserWarning)
        for fold, (_, members) in enumerate(splitter.split(np.zeros((n, 1)), y, np.asarray(groups))):
            folds[members] = fold
    order = np.random.default_rng(seed).permutation(n_folds)
    name_of_fold = {}
    for rank, fold in enumerate(order):
        name_of_fold[int(fold)] = (
            "test" if rank < n_test else "validation" if rank < n_test + n_val else "training"
        )
    return [name_of_fold[int(f)] for f in folds]
