"""Kinetic maps of a DCE-MRI exam: subtraction, percentage enhancement, signal enhancement ratio.

With ``S0`` the pre-contrast, ``S1`` the first post-contrast and ``S2`` a late post-contrast
signal (the last phase), per voxel:

- **subtraction** ``S1 - S0`` (signal units);
- **percentage enhancement** ``PE = 100 * (S1 - S0) / S0``, inside the body only (``S0`` above
  ``body_fraction`` of its 99th percentile; 0 in air, where ``S0`` is noise);
- **signal enhancement ratio** ``SER = (S1 - S0) / (S2 - S0)`` (Hylton: > 1.1 washout, 0.9-1.1
  plateau, < 0.9 persistent), only where the voxel enhances (``PE >= 100 * min_enhancement``) and
  ``S2 > S0``; 0 elsewhere, clipped to ``[0, max_ser]``. It needs a third phase.

Why custom: MONAI has no DCE kinetic transform. As MONAI does it, :class:`KineticMaps` is the array
transform (``(C, ...)`` phases in, ``(K, ...)`` maps out, K = 2 without a late phase, 3 with one)
and :class:`KineticMapsd` its dictionary wrapper writing ``<key>_subtraction``, ``<key>_pe``,
``<key>_ser``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from .mri import body_mask

__all__ = ["MAP_NAMES", "KineticMaps", "KineticMapsd", "kinetic_maps"]

#: Names of the maps, in output channel order.
MAP_NAMES = ("subtraction", "pe", "ser")


def kinetic_maps(
    phases: torch.Tensor, body_fraction: float = 0.1, min_enhancement: float = 0.1, max_ser: float = 10.0
) -> dict[str, torch.Tensor]:
    """Compute the kinetic maps of ``phases`` ``(C, ...)``: pre, first post[, ..., late post].

    Args:
        phases: channel 0 pre-contrast, channel 1 first post-contrast, the last channel the late
            phase for the SER (when there are at least 3 channels).
        body_fraction: body = pre-contrast voxels above this fraction of its 99th percentile.
        min_enhancement: SER only where ``(S1 - S0) / S0`` reaches this.
        max_ser: upper clip of the SER.

    Returns:
        ``{"subtraction", "pe"[, "ser"]}``: float32 tensors of the spatial shape.

    Example:
        >>> x = torch.stack([torch.full((4, 4), 100.0), torch.full((4, 4), 250.0), torch.full((4, 4), 200.0)])
        >>> m = kinetic_maps(x)
        >>> float(m["subtraction"][0, 0]), float(m["pe"][0, 0]), float(m["ser"][0, 0])
        (150.0, 150.0, 1.5)
    """
    if phases.shape[0] < 2:
        raise ValueError(
            f"kinetic maps need at least a pre- and a post-contrast phase, got {phases.shape[0]} channel(s)"
        )
    data = torch.as_tensor(phases).float()
    pre, post = data[0], data[1]
    sub = post - pre
    body = body_mask(pre, body_fraction) & (pre > 0)
    safe = torch.where(body, pre, torch.ones_like(pre))
    pe = torch.where(body, 100.0 * sub / safe, torch.zeros_like(pre))
    out = {"subtraction": sub, "pe": pe}
    if data.shape[0] >= 3:
        late = data[-1] - pre
        ok = body & (sub >= min_enhancement * pre) & (late > 0)
        ser = torch.where(ok, sub / torch.where(ok, late, torch.ones_like(late)), torch.zeros_like(pre))
        out["ser"] = ser.clamp(0.0, max_ser)
    return out


class KineticMaps(Transform):
    """Kinetic maps of DCE phases (see :func:`kinetic_maps`) stacked as channels.

    Args:
        body_fraction: body threshold (fraction of the pre-contrast 99th percentile).
        min_enhancement: least ``(S1 - S0) / S0`` for a SER value.
        max_ser: upper clip of the SER.
    """

    def __init__(self, body_fraction: float = 0.1, min_enhancement: float = 0.1, max_ser: float = 10.0) -> None:
        self.body_fraction = body_fraction
        self.min_enhancement = min_enhancement
        self.max_ser = max_ser

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        data = img if isinstance(img, torch.Tensor) else torch.as_tensor(np.asarray(img))
        maps = kinetic_maps(data, self.body_fraction, self.min_enhancement, self.max_ser)
        out = torch.stack([maps[n] for n in MAP_NAMES if n in maps])
        if isinstance(img, MetaTensor):
            out = MetaTensor(out, meta=img.meta, applied_operations=img.applied_operations)
        return out


class KineticMapsd(MapTransform):
    """Dictionary wrapper of :class:`KineticMaps`: adds ``<key>_subtraction``, ``<key>_pe`` (and ``<key>_ser``)."""

    def __init__(
        self,
        keys: KeysCollection,
        body_fraction: float = 0.1,
        min_enhancement: float = 0.1,
        max_ser: float = 10.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.maps = KineticMaps(body_fraction, min_enhancement, max_ser)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            stacked = self.maps(d[key])
            for c, name in enumerate(MAP_NAMES[: stacked.shape[0]]):
                d[f"{key}_{name}"] = stacked[c : c + 1]
        return d
