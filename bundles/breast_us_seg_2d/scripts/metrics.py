"""Per-case metrics that ``monai.handlers.MetricsSaver`` can write as one row per case.

This file is synced from ``sum_monai/bundle/bundle_scripts/metrics.py``; edit it there.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.data import MetaTensor
from monai.metrics import CumulativeIterationMetric, HausdorffDistanceMetric
from monai.metrics.confusion_matrix import compute_confusion_matrix_metric, get_confusion_matrix
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction


class SampleConfusionMetric(CumulativeIterationMetric):
    """Precision, recall, F1, ... of each image and class, buffered as ``(batch, class)``.

    Why not ``monai.metrics.ConfusionMatrixMetric``: it buffers raw ``(batch, class, 4)`` counts,
    which ``MetricsSaver`` cannot write per case; the values here are the same per-sample metrics
    (``compute_sample=True``), one number per image and class.

    Args:
        metric_name: any name ``compute_confusion_matrix_metric`` knows, e.g. ``"precision"``,
            ``"sensitivity"`` (recall), ``"f1 score"``.
        include_background: whether to score channel 0.
        reduction: how :meth:`aggregate` reduces the not-NaN values (an image without the class in
            prediction and label gives NaN and is left out).
    """

    def __init__(
        self, metric_name: str, include_background: bool = False, reduction: MetricReduction | str = "mean"
    ) -> None:
        super().__init__()
        self.metric_name = metric_name
        self.include_background = include_background
        self.reduction = reduction

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor, **kwargs: Any) -> torch.Tensor:  # type: ignore[override]
        counts = get_confusion_matrix(y_pred.float(), y.float(), include_background=self.include_background)
        return compute_confusion_matrix_metric(self.metric_name, counts)

    def aggregate(self, reduction: MetricReduction | str | None = None) -> torch.Tensor:
        value, _ = do_metric_reduction(self.get_buffer(), reduction or self.reduction)
        return value


class PhysicalHausdorffMetric(HausdorffDistanceMetric):
    """Hausdorff distance in physical units, spacing read from each prediction's metadata.

    Why: ``monai.handlers.HausdorffDistance`` calls the metric without ``spacing``, so distances
    would be in voxels; a ``MetaTensor`` prediction mapped back onto the input grid knows its
    spacing (millimetres for DICOM and NIfTI, 1 for PNG, i.e. pixels).
    """

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor, **kwargs: Any) -> torch.Tensor:  # type: ignore[override]
        if kwargs.get("spacing") is None and isinstance(y_pred, MetaTensor):
            kwargs["spacing"] = [float(s) for s in y_pred.pixdim]
        return super()._compute_tensor(y_pred, y, **kwargs)


class LesionOnNormalMetric(CumulativeIterationMetric):
    """Whether a lesion-free image (empty reference) gets any predicted lesion: 1, 0, or NaN.

    One value per image, ``(batch, 1)``: NaN for images whose reference has a lesion (they are
    scored by Dice), so :meth:`aggregate` is the share of normal images with a predicted lesion,
    the figure a user scanning a stack of normal exams sees (``sum-monai evaluate`` reports the
    same share). MONAI has no image-level false-positive metric; Dice is NaN or 0 on these images.

    Args:
        include_background: whether channel 0 counts as a lesion class (it never should).
    """

    def __init__(self, include_background: bool = False) -> None:
        super().__init__()
        self.include_background = include_background

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor, **kwargs: Any) -> torch.Tensor:  # type: ignore[override]
        first = 0 if self.include_background else 1
        lesion_ref = y[:, first:].flatten(1).any(dim=1)
        lesion_pred = y_pred[:, first:].flatten(1).any(dim=1).float()
        return torch.where(lesion_ref, torch.full_like(lesion_pred, float("nan")), lesion_pred)[:, None]

    def aggregate(self, reduction: MetricReduction | str | None = None) -> torch.Tensor:
        value, _ = do_metric_reduction(self.get_buffer(), reduction or MetricReduction.MEAN)
        return value
