"""Predicted lesions as scored connected components, as MONAI transforms (``scripts.lesions.<Name>``).

This file is synced from ``sum_monai/bundle/bundle_scripts/lesions.py``; edit it there.

A segmentation network outputs class probabilities; a reader (and a CAD evaluation) thinks in
lesions. :func:`scored_components` turns the argmax map into connected components, each with its
score (the highest foreground probability inside it), its class (the foreground class with the
highest mean probability inside it) and its size. :class:`KeepConfidentLesions` keeps the
components whose score reaches ``threshold`` and whose size reaches ``min_fraction`` of the image:
one rule that removes speckle islands and returns an empty mask for a lesion-free image (no
component is confident enough), with the threshold chosen by cross-validation
(``sum-monai cv``). MONAI's ``RemoveSmallObjects`` removes by size only and knows no
probabilities, hence this transform.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_dst_type, convert_to_numpy

__all__ = ["KeepConfidentLesions", "KeepConfidentLesionsd", "Lesion", "label_components", "scored_components"]


@dataclass(frozen=True)
class Lesion:
    """One predicted lesion.

    Attributes:
        slices: its bounding box in the image.
        local: boolean mask of the component inside the bounding box.
        score: highest foreground probability inside it (sum over foreground classes).
        label: its class (1.. number of classes - 1).
        size: pixels / voxels.
    """

    slices: tuple[slice, ...]
    local: np.ndarray
    score: float
    label: int
    size: int

    def paint(self, out: np.ndarray, value: Any = True) -> np.ndarray:
        """Write ``value`` into ``out`` (the image's spatial shape) where the component is."""
        out[self.slices][self.local] = value
        return out

    def touches(self, other: np.ndarray) -> bool:
        """Whether the component overlaps the boolean mask ``other`` (the image's spatial shape)."""
        return bool(other[self.slices][self.local].any())


def scored_components(probs: Any) -> list[Lesion]:
    """Connected components of the argmax of a probability map, scored.

    Args:
        probs: class probabilities ``(C, *spatial)`` with channel 0 the background (softmax
            output), numpy or torch. A pixel is lesion where the argmax is not the background.

    Returns:
        the components, largest score first.

    Example:
        >>> p = np.zeros((2, 8, 8), np.float32); p[0] = 1
        >>> p[:, 1:3, 1:3] = [[[0.1]], [[0.9]]]
        >>> [(round(c.score, 2), c.label, c.size) for c in scored_components(p)]
        [(0.9, 1, 4)]
    """
    probs = convert_to_numpy(probs, dtype=np.float32)
    foreground = probs[1:]
    lesion_prob = foreground.sum(axis=0)
    out = []
    for box, local in label_components(probs.argmax(axis=0) > 0):
        mean_per_class = foreground[(slice(None), *box)][:, local].mean(axis=1)
        score = float(lesion_prob[box][local].max())
        out.append(Lesion(box, local, score, int(mean_per_class.argmax()) + 1, int(local.sum())))
    return sorted(out, key=lambda c: -c.score)


def label_components(mask: np.ndarray) -> list[tuple[tuple[slice, ...], np.ndarray]]:
    """Connected components (full connectivity) of a boolean mask as ``(bounding box, local mask)``.

    Torch only, because MONAI's own labelling needs scikit-image or cuCIM, which a bundle does
    not require: each pixel starts with its own index and the largest index spreads through its
    component, along whole runs of each axis at once, diagonally by max-pooling, and by pointer
    jumping (a pixel takes the label its label's pixel holds), until nothing changes. Work is
    confined to the mask's bounding box.

    Example:
        >>> m = np.zeros((5, 5), bool); m[0, 0] = m[1, 1] = m[4, 4] = True
        >>> [int(local.sum()) for _, local in label_components(m)]
        [2, 1]
    """
    if not mask.any():
        return []
    nz = np.nonzero(mask)
    origin = tuple(slice(int(a.min()), int(a.max()) + 1) for a in nz)
    crop = torch.from_numpy(np.ascontiguousarray(mask[origin]))
    labels = torch.arange(1, crop.numel() + 1, dtype=torch.float64).reshape(crop.shape) * crop
    while True:
        grown = _spread(labels, crop)
        if torch.equal(grown, labels):
            break
        labels = grown
    grid = labels.reshape(crop.shape).long().numpy()
    where = np.nonzero(grid)
    values, inverse = np.unique(grid[where], return_inverse=True)
    lows, highs = [], []
    for coords in where:  # per-component bounding boxes in one pass per axis
        low = np.full(len(values), np.iinfo(np.int64).max)
        high = np.full(len(values), -1)
        np.minimum.at(low, inverse, coords)
        np.maximum.at(high, inverse, coords)
        lows.append(low)
        highs.append(high)
    out = []
    for k, value in enumerate(values):
        local_box = tuple(slice(int(lo[k]), int(hi[k]) + 1) for lo, hi in zip(lows, highs, strict=True))
        box = tuple(slice(o.start + b.start, o.start + b.stop) for o, b in zip(origin, local_box, strict=True))
        out.append((box, grid[local_box] == value))
    return out


def _run_max(labels: torch.Tensor, mask: torch.Tensor, axis: int) -> torch.Tensor:
    """Each pixel takes the largest label of its run (consecutive mask pixels along ``axis``)."""
    lab = labels.movedim(axis, -1).contiguous()
    m = mask.movedim(axis, -1).contiguous()
    starts = m.clone()
    starts[..., 1:] &= ~m[..., :-1]
    run = torch.cumsum(starts.reshape(-1), 0) * m.reshape(-1)
    best = torch.zeros(int(run.max()) + 1, dtype=lab.dtype).scatter_reduce(0, run, lab.reshape(-1), "amax")
    return (best[run] * m.reshape(-1)).reshape(lab.shape).movedim(-1, axis)


def _spread(labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """One round of :func:`label_components`' propagation (runs, diagonals, pointer jumps)."""
    for axis in range(mask.ndim):
        labels = _run_max(labels, mask, axis)
    pool = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[mask.ndim - 1]
    labels = pool(labels[None, None], 3, 1, 1)[0, 0] * mask
    flat = labels.reshape(-1)
    jumped = flat[(flat.long() - 1).clamp(min=0)]
    return torch.maximum(flat, jumped * mask.reshape(-1)).reshape(mask.shape)


class KeepConfidentLesions(Transform):
    """Label map of the confident lesions of a probability map (background elsewhere).

    Args:
        threshold: keep a component when its score (highest summed foreground probability)
            reaches it; 0.5 keeps every component of the argmax (of two classes: every one).
        min_fraction: and when its size reaches this fraction of the image (0: any size).

    Returns (``__call__``): a ``(1, *spatial)`` uint8 label map whose values are the component
    classes (as ``AsDiscreted(argmax=True, dtype=torch.uint8)`` gives).

    Example:
        >>> p = torch.zeros(2, 8, 8); p[0] = 1; p[:, 0, 0] = torch.tensor([0.4, 0.6])
        >>> p[:, 4:6, 4:6] = torch.tensor([0.05, 0.95])[:, None, None]
        >>> KeepConfidentLesions(threshold=0.9)(p).sum().item()  # the weak pixel at (0, 0) is dropped
        4
    """

    def __init__(self, threshold: float = 0.5, min_fraction: float = 0.0) -> None:
        self.threshold = float(threshold)
        self.min_fraction = float(min_fraction)

    def __call__(self, probs: Any) -> Any:
        array = convert_to_numpy(probs, dtype=np.float32)
        out = np.zeros((1, *array.shape[1:]), dtype=np.uint8)
        min_size = self.min_fraction * float(np.prod(array.shape[1:]))
        for lesion in scored_components(array):
            if lesion.score >= self.threshold and lesion.size >= min_size:
                lesion.paint(out[0], lesion.label)
        if isinstance(
            probs, torch.Tensor
        ):  # MetaTensor in, MetaTensor out (meta and trace kept), as MONAI transforms do
            return convert_to_dst_type(out, dst=probs, dtype=torch.uint8)[0]
        return out


class KeepConfidentLesionsd(MapTransform):
    """Dictionary wrapper of :class:`KeepConfidentLesions` (probabilities in, label map out, same key)."""

    def __init__(
        self,
        keys: KeysCollection,
        threshold: float = 0.5,
        min_fraction: float = 0.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.keep = KeepConfidentLesions(threshold, min_fraction)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.keep(d[key])
        return d
