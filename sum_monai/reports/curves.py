"""Learning curves from the metric history of a run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from sum_monai.utils.atomic import atomic_path


def plot_learning_curve(
    history: Mapping[str, Sequence[tuple[int, float]]], out_png: str | Path, title: str = ""
) -> Path:
    """Plot loss (left axis) and validation metrics (right axis) per epoch into ``out_png``.

    Args:
        history: ``{metric: [(epoch, value), ...]}``, e.g. from
            :func:`sum_monai.tracking.runs.metric_history`; keys containing ``loss`` go on the left.
        out_png: the PNG to write.
        title: figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax_loss = plt.subplots(figsize=(7, 4), dpi=110)
    ax_metric = ax_loss.twinx()
    for name, points in history.items():
        if not points:
            continue
        steps, values = zip(*points, strict=True)
        if "loss" in name:
            ax_loss.plot(steps, values, "-", color="tab:red", label=name)
        elif name != "lr":
            ax_metric.plot(steps, values, "-o", markersize=3, label=name)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss", color="tab:red")
    ax_metric.set_ylabel("validation metric")
    ax_metric.set_ylim(0, 1)
    handles = ax_loss.get_legend_handles_labels()[0] + ax_metric.get_legend_handles_labels()[0]
    labels = ax_loss.get_legend_handles_labels()[1] + ax_metric.get_legend_handles_labels()[1]
    ax_loss.legend(handles, labels, loc="center right", fontsize=8)
    ax_loss.grid(alpha=0.3)
    if title:
        ax_loss.set_title(title)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return Path(out_png)
