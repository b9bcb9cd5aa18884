"""The classical baseline: enhancement thresholding inside the breast, then connected components.

The literature's first method for enhancing breast lesions, and a check on the network: the
percentage enhancement ``PE = 100 * (post - pre) / pre`` of the first post-contrast phase is
thresholded inside a breast mask, and the largest connected components above a minimum volume
are kept. :class:`EnhancementThresholdInferer` is a MONAI ``Inferer``: it takes the place of the
sliding-window inferer (``configs/baseline.json``) and ignores the network, so predict, evaluate
and MONAI Label run it unchanged. Its input must keep the ratio between channels, i.e.
``NormalizeInsideBodyd(mode="scale")`` instead of the network's per-channel z-score.

The breast mask, on the ``RAS`` grid the bundle resamples to (axis 1 runs posterior -> anterior):

1. body: pre-contrast voxels above ``body_fraction`` of its 99th percentile;
2. chest wall: scanning each left-right / head-foot column from the front, the first dark run
   (at least ``min_gap_mm``) behind the body surface is lung; the breast ends
   ``chest_margin_mm`` in front of it. Gaps far in front of the slice's median lung position
   (air beside a breast) are ignored; columns without lung (in front of the heart) interpolate
   between their neighbours; without lungs in view (a breast-only field of view) the whole body
   is kept;
3. skin: ``skin_mm`` are eroded from the body surface (skin enhances).

Only numpy, torch, ITK (connected components) and MONAI are used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.inferers import Inferer
from monai.utils import convert_to_dst_type

__all__ = ["EnhancementThresholdInferer", "breast_mask", "enhancement_segmentation"]


def _erode(mask: np.ndarray, radius: Sequence[int]) -> np.ndarray:
    """Box erosion by ``radius`` voxels along each axis (voxels outside the array count as background)."""
    out = mask.copy()
    for axis, r in enumerate(radius):
        for _ in range(int(r)):
            shifted = np.zeros_like(out)
            lo = [slice(None)] * out.ndim
            hi = [slice(None)] * out.ndim
            lo[axis], hi[axis] = slice(1, None), slice(None, -1)
            both = np.zeros_like(out)
            shifted[tuple(hi)] = out[tuple(lo)]
            both[tuple(lo)] = out[tuple(hi)]
            out = out & shifted & both
    return out


def _components(mask: np.ndarray, min_voxels: int) -> np.ndarray:
    """Connected components (26-connectivity) of ``mask``, relabelled by size (1 = largest), small ones dropped."""
    import itk

    image = itk.image_from_array(np.ascontiguousarray(mask.astype(np.uint8)))
    labels = itk.connected_component_image_filter(image, fully_connected=True)
    relabelled = itk.relabel_component_image_filter(labels, minimum_object_size=max(1, int(min_voxels)))
    return np.asarray(itk.array_from_image(relabelled))


def breast_mask(
    pre: np.ndarray,
    pixdim: Sequence[float],
    body_fraction: float = 0.1,
    chest_margin_mm: float = 10.0,
    min_gap_mm: float = 3.0,
    skin_mm: float = 3.0,
    outlier_mm: float = 15.0,
) -> np.ndarray:
    """Boolean breast mask of a pre-contrast volume on a RAS grid (see the module docstring).

    Args:
        pre: pre-contrast volume ``(X, Y, Z)``, axis 1 posterior -> anterior.
        pixdim: voxel size in mm along the three axes.
        body_fraction: body threshold (fraction of the 99th percentile).
        chest_margin_mm: distance kept between the lungs and the breast mask.
        min_gap_mm: a dark run behind the body surface counts as lung from this length on.
        skin_mm: depth removed from the body surface.
        outlier_mm: dark gaps this far in front of the slice's median lung position are ignored
            (air beside a breast).
    """
    high = np.percentile(pre[:: max(1, pre.shape[0] // 64)], 99.0)
    body = pre > body_fraction * high
    if not body.any():
        return body
    # scanning each (x, z) column from the front: body entered, then the first dark run = lung
    entered = np.flip(np.cumsum(np.flip(body, axis=1), axis=1) > 0, axis=1)
    dark = _erode(entered & ~body, [0, round(min_gap_mm / pixdim[1] / 2.0), 0])
    y = np.arange(pre.shape[1])[None, :, None]
    front = np.where(dark, y, -1).max(axis=1)  # most anterior lung voxel per (x, z) column
    breast = body.copy()
    xs = np.arange(pre.shape[0])
    for z in range(pre.shape[2]):
        col = front[:, z].astype(np.float64)
        ok = col >= 0
        if not ok.any():
            continue  # no lung in this slice: the whole body
        # a gap far in front of the slice's median lung position is air beside a breast, not lung
        ok &= col <= np.median(col[ok]) + outlier_mm / pixdim[1]
        # columns without lung (in front of the heart) interpolate between their neighbours
        line = np.interp(xs, xs[ok], col[ok])
        breast[:, :, z] &= y[0, :, 0][None, :] > (line + chest_margin_mm / pixdim[1])[:, None]
    radius = [round(skin_mm / p) for p in pixdim]
    return breast & _erode(body, radius)


def enhancement_segmentation(
    pre: np.ndarray,
    post: np.ndarray,
    pixdim: Sequence[float],
    threshold_pe: float = 70.0,
    min_subtraction: float = 0.1,
    min_volume_mm3: float = 30.0,
    max_lesions: int = 1,
    **mask_kwargs: Any,
) -> np.ndarray:
    """Lesion mask: ``PE > threshold_pe`` inside :func:`breast_mask`, the largest components kept.

    Args:
        pre / post: pre- and first post-contrast volumes on one scale (``NormalizeInsideBody``
            ``mode="scale"``: the body is about 1).
        pixdim: voxel size in mm.
        threshold_pe: percentage enhancement threshold (70 %: a common CAD setting).
        min_subtraction: ``post - pre`` must also exceed this (in units of the body's mean
            pre-contrast signal), so dark, noisy voxels with a large PE are ignored.
        min_volume_mm3: smaller components are dropped.
        max_lesions: how many of the largest components are kept (0: all).
        mask_kwargs: passed to :func:`breast_mask`.
    """
    breast = breast_mask(pre, pixdim, **mask_kwargs)
    safe = np.where(pre > 0, pre, 1.0)
    pe = 100.0 * (post - pre) / safe
    candidate = breast & (pe > threshold_pe) & ((post - pre) > min_subtraction)
    if not candidate.any():
        return candidate
    labels = _components(candidate, min_volume_mm3 / float(np.prod(pixdim)))
    if max_lesions > 0:
        labels = np.where(labels <= max_lesions, labels, 0)
    return labels > 0


class EnhancementThresholdInferer(Inferer):
    """A MONAI ``Inferer`` that segments by enhancement thresholding; the network is not used.

    Input ``(B, C, X, Y, Z)``: channel ``pre_channel`` pre-contrast, ``post_channel`` first
    post-contrast, on one intensity scale; output ``(B, 2, X, Y, Z)`` logits (background 0,
    lesion +/- ``logit``), which the bundle's softmax + argmax turn into the mask.

    Args:
        pixdim: voxel size in mm of the input grid (the bundle's ``pixdim``).
        threshold_pe: percentage enhancement threshold.
        min_subtraction: least ``post - pre`` (body mean = 1).
        min_volume_mm3: smallest kept component.
        max_lesions: components kept, largest first (0: all).
        pre_channel / post_channel: channel indices.
        logit: magnitude of the lesion logit.
        mask_kwargs: breast-mask settings (:func:`breast_mask`).

    Example:
        >>> inferer = EnhancementThresholdInferer(pixdim=(1.0, 1.0, 2.0))
        >>> out = inferer(torch.ones(1, 2, 32, 32, 16), network=None)
        >>> tuple(out.shape), int(out[0, 1].gt(0).sum())
        ((1, 2, 32, 32, 16), 0)
    """

    def __init__(
        self,
        pixdim: Sequence[float] = (1.0, 1.0, 2.0),
        threshold_pe: float = 70.0,
        min_subtraction: float = 0.1,
        min_volume_mm3: float = 30.0,
        max_lesions: int = 1,
        pre_channel: int = 0,
        post_channel: int = 1,
        logit: float = 10.0,
        **mask_kwargs: Any,
    ) -> None:
        super().__init__()
        self.pixdim = tuple(float(p) for p in pixdim)
        self.threshold_pe = threshold_pe
        self.min_subtraction = min_subtraction
        self.min_volume_mm3 = min_volume_mm3
        self.max_lesions = max_lesions
        self.pre_channel = pre_channel
        self.post_channel = post_channel
        self.logit = logit
        self.mask_kwargs = mask_kwargs

    def __call__(self, inputs: torch.Tensor, network: Any = None, *args: Any, **kwargs: Any) -> torch.Tensor:
        x = inputs.detach().float().cpu().numpy()
        out = np.zeros((x.shape[0], 2, *x.shape[2:]), np.float32)
        for b in range(x.shape[0]):
            mask = enhancement_segmentation(
                x[b, self.pre_channel], x[b, self.post_channel], self.pixdim, self.threshold_pe,
                self.min_subtraction, self.min_volume_mm3, self.max_lesions, **self.mask_kwargs,
            )  # fmt: skip
            out[b, 1] = np.where(mask, self.logit, -self.logit)
        return convert_to_dst_type(torch.from_numpy(out), inputs)[0]
