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
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_dst_type, convert_to_numpy
from scipy import ndimage

__all__ = ["KeepConfidentLesions", "KeepConfidentLesionsd", "Lesion", "scored_components"]


@dataclass(frozen=True)
class Lesion:
    """One predicted lesion.

    Attributes:
        slices: its bounding box in the image (``ndimage.find_objects``).
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
    labels, _ = ndimage.label(probs.argmax(axis=0) > 0)
    out = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        local = labels[box] == index
        mean_per_class = foreground[(slice(None), *box)][:, local].mean(axis=1)
        score = float(lesion_prob[box][local].max())
        out.append(Lesion(box, local, score, int(mean_per_class.argmax()) + 1, int(local.sum())))
    return sorted(out, key=lambda c: -c.score)


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
        if isinstance(probs, torch.Tensor):  # MetaTensor in, MetaTensor out (meta and trace kept), as MONAI transforms do
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
