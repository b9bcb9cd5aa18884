"""Intensity normalisation of breast MRI inside the body.

Why not ``monai.transforms.NormalizeIntensity(nonzero=True)``: MRI air is noise, not zero, and its
share of the volume varies with the field of view, so statistics over all (or all non-zero)
voxels change with the framing; statistics inside the body do not.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform


def body_mask(reference: torch.Tensor, fraction: float = 0.1, percentile: float = 99.0) -> torch.Tensor:
    """Voxels brighter than ``fraction`` of the ``percentile`` of ``reference`` (air is darker)."""
    ref = reference.float()
    high = torch.quantile(ref.flatten()[:: max(1, ref.numel() // 1_000_000)], percentile / 100.0)
    return ref > fraction * high


class NormalizeInsideBody(Transform):
    """Z-score every channel with the mean and std of the voxels inside the body.

    The body is found on channel ``reference_channel`` (the pre-contrast image) as the voxels
    brighter than ``fraction`` of its ``percentile``-th intensity percentile. All voxels are
    transformed with those statistics, so air becomes strongly negative.

    With ``mode="scale"`` every channel is instead divided by the reference channel's mean inside
    the body (the body is about 1): ratios between channels, hence the percentage enhancement
    ``post / pre - 1`` that the classical baseline (``scripts/baseline.py``) thresholds, survive.

    Args:
        reference_channel: channel defining the body mask.
        fraction: threshold as a fraction of the high percentile.
        percentile: the high percentile (robust to a few very bright voxels).
        mode: ``"zscore"`` (per channel, the network's input) or ``"scale"`` (one common scale).

    Example:
        >>> img = torch.rand(2, 32, 32, 16) * 100
        >>> out = NormalizeInsideBody()(img)
        >>> out.shape
        torch.Size([2, 32, 32, 16])
    """

    def __init__(
        self, reference_channel: int = 0, fraction: float = 0.1, percentile: float = 99.0, mode: str = "zscore"
    ) -> None:
        if mode not in ("zscore", "scale"):
            raise ValueError(f"mode must be 'zscore' or 'scale', got {mode!r}")
        self.reference_channel = reference_channel
        self.fraction = fraction
        self.percentile = percentile
        self.mode = mode

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        data = img if isinstance(img, torch.Tensor) else torch.as_tensor(np.asarray(img))
        mask = body_mask(data[self.reference_channel], self.fraction, self.percentile)
        if not mask.any():
            raise ValueError("no voxel above the body threshold: is the image empty?")
        out = torch.empty_like(data, dtype=torch.float32)
        if self.mode == "scale":
            scale = data[self.reference_channel][mask].float().mean()
            out[:] = data.float() / (scale if scale > 0 else 1.0)
        for c in range(data.shape[0] if self.mode == "zscore" else 0):
            inside = data[c][mask].float()
            std = inside.std()
            out[c] = (data[c].float() - inside.mean()) / (std if std > 0 else 1.0)
        if isinstance(img, MetaTensor):
            out = MetaTensor(out, meta=img.meta, applied_operations=img.applied_operations)
        return out


class NormalizeInsideBodyd(MapTransform):
    """Dictionary wrapper of :class:`NormalizeInsideBody`."""

    def __init__(
        self,
        keys: KeysCollection,
        reference_channel: int = 0,
        fraction: float = 0.1,
        percentile: float = 99.0,
        mode: str = "zscore",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.normalizer = NormalizeInsideBody(reference_channel, fraction, percentile, mode)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.normalizer(d[key])
        return d
