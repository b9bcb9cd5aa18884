"""Flip test-time augmentation as a MONAI inferer, used from the configs as ``scripts.tta.FlipTTAInferer``.

This file is synced from ``sum_monai/bundle/bundle_scripts/tta.py``; edit it there.

The network sees the image and its mirror images; the mirrored outputs are flipped back and the
logits averaged (no axes: the plain network). The image and its mirrors go through the network
as one batch (one call instead of one per pass: a CPU runs a batch of 2 faster than two batches of
1); ``batched=False`` runs them one after another (half the memory, for large 3D windows). Whether a bundle mirrors is its ``mirror_axes``,
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
        batched: run the input and its mirrors as one batch through ``inferer`` (default), else
            one call per pass; the result is the same up to float rounding.

    Example::

        >>> import torch
        >>> net = torch.nn.Conv2d(1, 2, 3, padding=1)
        >>> FlipTTAInferer(spatial_axes=(0,))(torch.rand(1, 1, 8, 8), net).shape
        torch.Size([1, 2, 8, 8])
    """

    def __init__(
        self, spatial_axes: Sequence[int] = (0,), inferer: Inferer | None = None, batched: bool = True
    ) -> None:
        super().__init__()
        self.spatial_axes = tuple(int(a) for a in spatial_axes)
        self.inferer = inferer or SimpleInferer()
        self.batched = batched

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> torch.Tensor:
        if not self.spatial_axes:
            return self.inferer(inputs, network, *args, **kwargs)
        if self.batched:
            dims = [axis + 2 for axis in self.spatial_axes]  # batch and channel come first
            views = torch.cat([inputs, *(torch.flip(inputs, dims=(d,)) for d in dims)], dim=0)
            outs = self.inferer(views, network, *args, **kwargs).split(inputs.shape[0], dim=0)
            total = outs[0] + sum(torch.flip(o, dims=(d,)) for o, d in zip(outs[1:], dims, strict=True))
            return total / (1 + len(dims))
        out = self.inferer(inputs, network, *args, **kwargs)
        for axis in self.spatial_axes:
            dim = axis + 2  # batch and channel come first
            mirrored = self.inferer(torch.flip(inputs, dims=(dim,)), network, *args, **kwargs)
            out = out + torch.flip(mirrored, dims=(dim,))
        return out / (1 + len(self.spatial_axes))
