"""Post-processing of scanner-size probability volumes: the same results as MONAI's transforms, faster.

A 2-class softmax of a 448 x 448 x 160 DCE volume is 64 M floats; two MONAI steps cost seconds
there that these do in a fraction (timed on a 2-core AVX2 EPYC, torch 2.13):

- :class:`InvertForegroundd`: ``Invertd`` on the foreground channels only (background derived).
- :class:`ChannelArgmaxd`: ``AsDiscreted(argmax=True)`` without ``torch.argmax`` over the short
  channel axis, which PyTorch's CPU kernel runs slowly (7.3 s vs 0.5 s for this volume).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import Invertd, MapTransform


class InvertForegroundd(Invertd):
    """``Invertd`` for softmax probabilities that interpolates the foreground channels only.

    Why not ``Invertd`` alone: undoing the resampling of a scanner-size volume (2 x 448 x 448 x 160)
    costs one trilinear interpolation per channel, seconds each. Softmax channels sum to 1, and a
    linear interpolation with border padding (``Spacingd``'s default) keeps that sum, so the
    background channel is derived as ``1 - sum(foreground)`` instead of interpolated: the same
    probabilities up to float rounding, in half the time for two classes. Arguments as ``Invertd``
    (channel 0 of each key is the background; a ``post_func`` sees the foreground channels only).
    With zeros padding, or an inverted crop, the derived background is 1 outside the data where
    ``Invertd`` gives 0: the labels are the same, the background probability there is not.
    """

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = d[key][1:]
        d = dict(super().__call__(d))
        for key in self.key_iterator(d):
            foreground = d[key]
            background = (1.0 - foreground.sum(dim=0, keepdim=True)).clamp_(0.0, 1.0)
            d[key] = torch.cat([background, foreground], dim=0)
        return d


def channel_argmax(probs: torch.Tensor, dtype: torch.dtype = torch.uint8) -> torch.Tensor:
    """``argmax`` over channel 0 of ``(C, *spatial)``, keeping the channel axis (first maximum wins).

    One comparison pass per channel instead of ``torch.argmax(dim=0)``: same labels, ties to the
    lower class as ``argmax`` breaks them.

    Example:
        >>> p = torch.tensor([[[0.6, 0.2]], [[0.4, 0.8]]])
        >>> channel_argmax(p).tolist()
        [[[0, 1]]]
    """
    best = probs[0]
    labels = torch.zeros(best.shape, dtype=dtype, device=probs.device)
    for c in range(1, int(probs.shape[0])):
        better = probs[c] > best
        labels.masked_fill_(better, c)
        best = torch.where(better, probs[c], best)
    return labels.unsqueeze(0)


class ChannelArgmaxd(MapTransform):
    """``AsDiscreted(keys, argmax=True, dtype=...)`` through :func:`channel_argmax` (MetaTensor kept).

    Args:
        keys: probability keys ``(C, *spatial)``.
        dtype: the label dtype (``torch.uint8`` as the masks are written).
        allow_missing_keys: as for ``MapTransform``.
    """

    def __init__(
        self, keys: KeysCollection, dtype: torch.dtype = torch.uint8, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.dtype = dtype

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            probs = d[key]
            plain = probs.as_tensor() if isinstance(probs, MetaTensor) else torch.as_tensor(probs)
            labels = channel_argmax(plain, self.dtype)
            if isinstance(probs, MetaTensor):
                labels = MetaTensor(labels, meta=dict(probs.meta), applied_operations=list(probs.applied_operations))
            d[key] = labels
        return d
