"""Reports: metric tables, learning curves, overlays, breast density."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from sum_monai.reports.curves import plot_learning_curve
from sum_monai.reports.density import density_report, percent_fibroglandular
from sum_monai.reports.overlays import OverlayCase, display_slice, write_overlay_grid
from sum_monai.reports.tables import format_summary, read_raw_metrics, summarise


def test_raw_metric_csvs_become_one_row_per_case(tmp_path: Path) -> None:
    (tmp_path / "val_mean_dice_raw.csv").write_text("filename,class0,class1,mean\ncase-a,0.5,nan,0.5\ncase-b,0.9,0.7,0.8\n")
    (tmp_path / "val_hd95_raw.csv").write_text("filename,class0,class1,mean\ncase-a,3.0,nan,3.0\ncase-b,1.0,2.0,1.5\n")
    table = read_raw_metrics(tmp_path, ["benign", "malignant"])
    assert table["case-b"] == {"dice": 0.8, "dice_benign": 0.9, "dice_malignant": 0.7, "hd95": 1.5, "hd95_benign": 1.0, "hd95_malignant": 2.0}
    assert math.isnan(table["case-a"]["dice_malignant"])


def test_summary_leaves_out_cases_without_the_structure() -> None:
    per_case = {"a": {"dice": 0.6}, "b": {"dice": 1.0}, "c": {"dice": math.nan}}
    summary = summarise(per_case, {"a": "benign", "b": "malignant", "c": "normal"})
    assert summary["all"]["dice"] == pytest.approx(0.8)
    assert summary["all"]["n"] == 3
    assert summary["malignant"]["dice"] == 1.0
    assert math.isnan(summary["normal"]["dice"])
    text = format_summary(summary, ["dice"])
    assert text.splitlines()[1].split() == ["all", "3", "0.800"]


def test_percent_density_and_ranking() -> None:
    assert percent_fibroglandular(np.array([[1, 1, 2, 2], [3, 0, 0, 0]])) == 50.0
    assert math.isnan(percent_fibroglandular(np.zeros((4, 4))))
    predicted = {"a": 10.0, "b": 20.0, "c": 35.0, "d": 60.0, "e": 15.0}
    reference = {"a": 12.0, "b": 18.0, "c": 40.0, "d": 55.0, "e": 10.0}
    category = {"a": "A", "b": "B", "c": "C", "d": "D", "e": "A"}
    report = density_report(predicted, reference, category)
    assert report.spearman_predicted == pytest.approx(0.9747, abs=1e-3)
    assert report.mean_abs_difference == pytest.approx(3.8)  # (2 + 2 + 5 + 5 + 5) / 5
    assert [r["case_id"] for r in report.rows] == ["a", "b", "c", "d", "e"]


def test_learning_curve_and_overlays_are_drawn(tmp_path: Path) -> None:
    curve = plot_learning_curve({"train_loss": [(1, 1.0), (2, 0.5)], "val_mean_dice": [(2, 0.7)]}, tmp_path / "c.png")
    assert curve.stat().st_size > 5000
    image = np.random.default_rng(0).random((1, 40, 30))
    label = np.zeros((40, 30))
    label[10:20, 5:15] = 1
    case = OverlayCase("x", image, label, label)
    shown, lab, _ = display_slice(case)
    assert shown.shape == (30, 40) and lab.sum() == 100  # (C, W, H) shown as rows x columns
    volume = np.zeros((2, 20, 20, 10))
    mask3d = np.zeros((20, 20, 10))
    mask3d[5:8, 5:8, 7] = 1
    _, lab3d, _ = display_slice(OverlayCase("v", volume, mask3d, None))
    assert lab3d.sum() == 9  # the slice with the lesion is the one drawn
    out = write_overlay_grid([case, OverlayCase("v", volume, mask3d, None)], tmp_path / "o.png")
    assert out.stat().st_size > 5000
