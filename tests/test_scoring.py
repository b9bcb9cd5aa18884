"""Scores on hand-made predictions with known answers: lesion components, FROC, film class, levers, folds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sum_monai.bundle.bundle_scripts.lesions import (
    KeepConfidentLesions,
    KeepConfidentLesionsd,
    scored_components,
)
from sum_monai.datalists.split import assign_folds
from sum_monai.scoring.detection import (
    Circle,
    film_class,
    film_class_scores,
    film_result,
    froc,
    operating_point,
)
from sum_monai.scoring.levers import ComponentCache, PostProcessing, nested_operating_point, pick_threshold
from sum_monai.scoring.segmentation import score_case, summarise
from sum_monai.workflows.cv import fold_datalist
from sum_monai.workflows.oof import OOFCase


def _probs(shape: tuple[int, int], blobs: list[tuple[slice, slice, int, float]], classes: int = 3) -> np.ndarray:
    """Softmax-like maps: background 1 except the blobs, each (rows, cols, class, probability)."""
    p = np.zeros((classes, *shape), np.float32)
    p[0] = 1
    for rows, cols, cls, prob in blobs:
        p[:, rows, cols] = 0
        p[cls, rows, cols] = prob
        p[0, rows, cols] = 1 - prob
    return p


def test_components_carry_score_class_and_size() -> None:
    p = _probs((20, 20), [(slice(2, 5), slice(2, 5), 1, 0.7), (slice(10, 12), slice(10, 14), 2, 0.95)])
    comps = scored_components(p)
    assert [(round(c.score, 2), c.label, c.size) for c in comps] == [(0.95, 2, 8), (0.7, 1, 9)]


def test_keep_confident_lesions_drops_weak_and_small_components() -> None:
    p = _probs((20, 20), [(slice(2, 5), slice(2, 5), 1, 0.7), (slice(10, 12), slice(10, 14), 2, 0.95)])
    assert set(np.unique(KeepConfidentLesions(threshold=0.5)(p))) == {0, 1, 2}
    assert set(np.unique(KeepConfidentLesions(threshold=0.9)(p))) == {0, 2}
    # 9 pixels of 400 is 2.25 %: a 2.1 % floor keeps it, 2.3 % does not; the 8-pixel one goes both times
    assert set(np.unique(KeepConfidentLesions(min_fraction=0.021)(p))) == {0, 1}
    assert not KeepConfidentLesions(min_fraction=0.023)(p).any()
    out = KeepConfidentLesionsd("pred", threshold=0.9)({"pred": torch.from_numpy(p)})["pred"]
    assert isinstance(out, torch.Tensor) and out.shape == (1, 20, 20) and out.sum() == 16


def test_froc_on_known_films() -> None:
    circles = [Circle((5.0, 5.0), 3.0, "mass", "M"), Circle((15.0, 15.0), 2.0, "calcification", "B")]
    # film A: one component on the mass (0.9), one false positive far away (0.6); calcification missed
    film_a = film_result("a", 0, "malignant", circles, _probs((24, 24), [
        (slice(4, 7), slice(4, 7), 2, 0.9), (slice(20, 22), slice(0, 2), 1, 0.6)]))  # fmt: skip
    # film B: normal, one false positive at 0.8
    film_b = film_result("b", 0, "normal", [], _probs((24, 24), [(slice(0, 2), slice(0, 2), 1, 0.8)]))
    films = [film_a, film_b]
    assert operating_point(films, 0.5) == (0.5, 1.0)  # 1 of 2 lesions, 2 FPs over 2 films
    assert operating_point(films, 0.85) == (0.5, 0.0)
    assert operating_point(films, 0.95) == (0.0, 0.0)
    assert operating_point(films, 0.5, "calcification") == (0.0, 1.0)
    assert [r[1:] for r in froc(films, (0.5, 0.7, 0.95))] == [(0.5, 1.0), (0.5, 0.5), (0.0, 0.0)]
    assert film_class(film_a, 0.5) == "malignant" and film_class(film_b, 0.5) == "benign"
    scores = film_class_scores(films, 0.85)
    assert scores.confusion.tolist() == [[1, 0, 0], [0, 0, 0], [0, 0, 1]]
    assert scores.balanced_accuracy == 1.0 and scores.normal_with_lesion == 0.0
    assert scores.malignant_auc == 1.0  # 0.9 malignant probability vs none


def test_segmentation_scores_and_fold_summary() -> None:
    label = np.zeros((10, 10), np.uint8)
    label[2:6, 2:6] = 1
    pred = np.zeros_like(label)
    pred[2:6, 2:4] = 1
    s = score_case("x", 0, "benign", pred, label)
    assert s.dice == pytest.approx(2 * 8 / (8 + 16)) and s.iou == pytest.approx(0.5) and s.hd95 == pytest.approx(2.0)
    missed = score_case("y", 1, "benign", np.zeros_like(label), label)
    assert missed.dice == 0.0 and math.isnan(missed.hd95) and not missed.predicted
    normal = score_case("z", 1, "normal", pred, np.zeros_like(label))
    assert normal.predicted and math.isnan(normal.dice)
    summary = summarise([s, missed, normal])
    assert summary.figures["dice"] == pytest.approx((2 / 3) / 2) and summary.figures["normal_fp"] == 1.0
    assert summary.per_fold["dice"] == [pytest.approx(2 / 3), 0.0]
    mean, sd = summary.mean_sd("dice")
    assert mean == pytest.approx(1 / 3) and sd == pytest.approx(np.std([2 / 3, 0.0], ddof=1))


def _oof(case_id: str, fold: int, cls: str, score: float, lesion: bool) -> OOFCase:
    label = np.zeros((16, 16), np.uint8)
    if lesion:
        label[4:8, 4:8] = 1
    fg = np.zeros((1, 16, 16), np.uint8)
    fg[0, 4:8, 4:8] = round(score * 255)
    return OOFCase(case_id, fold, cls, label, fg, fg)


def test_operating_point_is_chosen_on_the_other_folds() -> None:
    # normal images of fold 0 carry weak lesions (0.6), those of fold 1 strong ones (0.96)
    cases = [_oof("l0", 0, "benign", 0.99, True), _oof("n0", 0, "normal", 0.6, False),
             _oof("l1", 1, "benign", 0.99, True), _oof("n1", 1, "normal", 0.96, False)]  # fmt: skip
    cache = ComponentCache(cases)
    # pooled: 0.6 keeps both normals (1.0 > 0.5), 0.7 drops the weak one
    assert pick_threshold(cache, PostProcessing(), cases, max_normal_fp=0.5) == 0.7
    scores, chosen = nested_operating_point(cache, PostProcessing(), max_normal_fp=0.0)
    # fold 0's threshold comes from fold 1 (must exceed 0.96), fold 1's from fold 0 (must exceed 0.6)
    assert chosen == {0: 0.97, 1: 0.7}
    by_id = {s.case_id: s for s in scores}
    assert not by_id["n0"].predicted and by_id["n1"].predicted  # fold 1's normal is not caught by 0.7
    assert by_id["l0"].dice == 1.0 and by_id["l1"].dice == 1.0


def test_folds_keep_groups_whole_and_balance_classes() -> None:
    groups = [f"g{i // 2}" for i in range(40)]
    classes = ["benign" if i % 4 < 2 else "malignant" for i in range(40)]
    folds = assign_folds(classes, groups, n_folds=5, seed=0)
    assert all(folds[i] == folds[i + 1] for i in range(0, 40, 2))
    assert sorted(np.bincount(folds)) == [8] * 5
    assert assign_folds(classes, groups, 5, seed=0) == folds
    with pytest.raises(ValueError, match="only 3 independent group"):
        assign_folds(["a"] * 3, ["x", "y", "z"], n_folds=5)


def test_fold_datalist_trains_on_the_other_folds(tmp_path) -> None:
    datalist = {
        "training": [{"image": "a.png", "label": "a_m.png", "fold": 1}, {"image": "b.png", "label": ["b_m.png"], "fold": 2}],
        "validation": [{"image": "c.png", "label": "c_m.png", "fold": 0}],
    }
    fold1 = fold_datalist(datalist, tmp_path, 1)
    assert [d["image"] for d in fold1["validation"]] == [str(tmp_path / "a.png")]
    assert sorted(d["image"] for d in fold1["training"]) == [str(tmp_path / "b.png"), str(tmp_path / "c.png")]
    assert fold1["training"][0]["label"] == [str(tmp_path / "b_m.png")] or fold1["training"][1]["label"] == [str(tmp_path / "b_m.png")]
