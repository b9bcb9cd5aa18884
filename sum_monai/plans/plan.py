"""Turn a dataset fingerprint into bundle config overrides."""

from __future__ import annotations

from typing import Any

from sum_monai.plans.fingerprint import Fingerprint


def _multiple(value: float, step: int, lo: int, hi: int) -> int:
    """``value`` rounded to a multiple of ``step`` and clipped to ``[lo, hi]``."""
    return int(min(hi, max(lo, step * round(value / step))))


def plan_overrides(fp: Fingerprint, max_size: int = 256, max_roi: tuple[int, ...] = (128, 128, 48)) -> dict[str, Any]:
    """Bundle overrides that fit the data, within a compute budget.

    - 2D: ``image_size`` = the median longest side, to a multiple of 16 (four 2x downsamplings),
      at most ``max_size`` (the budget: 256 trains on a CPU, 512-1024 wants a GPU).
    - 3D: ``pixdim`` = the median voxel size (nnU-Net's choice for the target spacing), and
      ``roi_size`` = the median volume size at that spacing, to multiples of 8 (three
      downsamplings) within ``max_roi``.

    Example:
        >>> fp = Fingerprint(10, 2, 1, [560.0, 470.0], [1.0, 1.0], [1.0, 1.0], [0, 90, 250], 0.1)
        >>> plan_overrides(fp)
        {'image_size': 256}
        >>> plan_overrides(fp, max_size=1024)
        {'image_size': 560}
    """
    if fp.spatial_dims == 2:
        return {"image_size": _multiple(max(fp.median_shape), 16, 64, max_size)}
    pixdim = [round(s, 3) for s in fp.median_spacing]
    roi = [_multiple(n, 8, 16, cap) for n, cap in zip(fp.median_shape, max_roi, strict=True)]
    return {"pixdim": pixdim, "roi_size": roi}
