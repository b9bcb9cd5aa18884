"""Flip test-time augmentation as a MONAI inferer, used from the configs as ``scripts.tta.FlipTTAInferer``.

This file is synced from ``sum_monai/bundle/bundle_scripts/tta.py``; edit it there.

The network sees the image and its mirror images; the mirrored outputs are flipped back and the
logits averaged (no axes: the plain network). Whether a bundle mirrors is its ``mirror_axes``,
chosen by cross-validation (``sum-monai cv``, see each model card). MONAI's ``TestTimeAugmentation``
targets uncertainty estimation with random transforms and inversion per sample; a deterministic
flip needs none of that, hence this small inferer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.inferers import Inferer, SimpleInferer


class FlipTTAInferer(Inferer):
    """Mean of ``inferer``'s output on the input and on its flips along ``spatial_axes``.

    Args:
        spatial_axes: spatial axes to mirror, one pass each (``0`` is the first spatial axis of a
            channel-first image, i.e. left-right for images read by ``PILReader``). Ultrasound keeps
            its depth axis: only ``(0,)`` makes sense there.
        inferer: the inferer run for each pass; default :class:`monai.inferers.SimpleInferer`.

    Example::

        >>> import torch
        >>> net = torch.nn.Conv2d(1, 2, 3, padding=1)
        >>> FlipTTAInferer(spatial_axes=(0,))(torch.rand(1, 1, 8, 8), net).shape
        torch.Size([1, 2, 8, 8])
    """

    def __init__(self, spatial_axes: Sequence[int] = (0,), inferer: Inferer | None = None) -> None:
        super().__init__()
        self.spatial_axes = tuple(int(a) for a in spatial_axes)
        self.inferer = inferer or SimpleInferer()

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> torch.Tensor:
        out = self.inferer(inputs, network, *args, **kwargs)
        for axis in self.spatial_axes:
            dim = axis + 2  # batch and channel come first
            mirrored = self.inferer(torch.flip(inputs, dims=(dim,)), network, *args, **kwargs)
            out = out + torch.flip(mirrored, dims=(dim,))
        return out / (1 + len(self.spatial_axes))
