"""Overlay pictures: image with the reference (green) and predicted (red) outlines.

Arrays come in MONAI's layout, channel first with the first spatial axis along image columns
(``(C, W, H)`` in 2D, ``(C, X, Y, Z)`` in 3D); they are transposed here for display.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sum_monai.utils.atomic import atomic_path


@dataclass
class OverlayCase:
    """One panel: ``image`` (C, *spatial), optional ``label`` and ``pred`` label maps (spatial)."""

    title: str
    image: np.ndarray
    label: np.ndarray | None
    pred: np.ndarray | None


def display_slice(case: OverlayCase) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """2D ``(H, W)`` views: the image's last channel, and for 3D the axial slice with most lesion."""
    image = np.asarray(case.image, dtype=np.float32)
    image = image[-1] if image.ndim in (3, 4) else image
    label = None if case.label is None else np.asarray(case.label)
    pred = None if case.pred is None else np.asarray(case.pred)
    if image.ndim == 3:
        ref = label if label is not None and label.any() else pred
        z = int(np.argmax((ref > 0).sum(axis=(0, 1)))) if ref is not None and ref.any() else image.shape[2] // 2
        image = image[..., z]
        label = None if label is None else label[..., z]
        pred = None if pred is None else pred[..., z]
    return image.T, None if label is None else label.T, None if pred is None else pred.T


def write_overlay_grid(cases: Sequence[OverlayCase], out_png: str | Path, columns: int = 4, title: str = "") -> Path:
    """Draw ``cases`` as a grid of overlays into ``out_png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(cases))
    cols = min(columns, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), dpi=100, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, case in zip(axes.ravel(), cases, strict=False):
        image, label, pred = display_slice(case)
        lo, hi = np.percentile(image, [1, 99]) if image.size else (0, 1)
        ax.imshow(image, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1)
        for mask, color in ((label, "lime"), (pred, "red")):
            if mask is None:
                continue
            for value in [v for v in np.unique(mask) if v > 0]:
                ax.contour(mask == value, levels=[0.5], colors=color, linewidths=1.0)
        ax.set_title(case.title, fontsize=8)
    fig.suptitle(title or "green: reference, red: prediction", fontsize=10)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return Path(out_png)
