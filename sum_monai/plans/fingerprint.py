"""Measure a dataset: what its images look like, before choosing how to preprocess them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sum_monai.errors import DataError
from sum_monai.io.read import read_image

if TYPE_CHECKING:
    from sum_monai.bundle.locate import Bundle


@dataclass
class Fingerprint:
    """Summary statistics of the training cases of a datalist.

    Attributes:
        n_cases: cases measured.
        spatial_dims: 2 or 3.
        channels: image channels.
        median_shape: median spatial size (MONAI axis order: ``(W, H)`` or ``(X, Y, Z)``).
        median_spacing: median voxel size in mm (1.0 for PNG).
        spacing_p10: 10th percentile of the voxel size per axis.
        intensity_percentiles: 0.5th, 50th and 99.5th intensity percentiles of channel 0.
        foreground_fraction: mean share of lesion (label > 0) pixels per case.
    """

    n_cases: int
    spatial_dims: int
    channels: int
    median_shape: list[float]
    median_spacing: list[float]
    spacing_p10: list[float]
    intensity_percentiles: list[float]
    foreground_fraction: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _first(value: str | list[str]) -> str:
    return value[0] if isinstance(value, list) else value


def fingerprint(
    datalist: str | Path, split: str = "training", max_cases: int | None = None, bundle: Bundle | None = None
) -> Fingerprint:
    """Fingerprint the ``split`` cases of a MONAI datalist (paths relative to its folder).

    Args:
        datalist: datalist JSON.
        split: which cases to measure (the training split: the plan must not peek at test data).
        max_cases: measure at most this many (evenly spread) to bound the time on large sets.
        bundle: read the images with this bundle's own loading, so intensities and spacings are
            those its network is given (e.g. mammograms after VOI LUT and MONOCHROME1 inversion).

    Raises:
        DataError: unreadable datalist, empty split or an image that cannot be read.
    """
    path = Path(datalist)
    try:
        cases = json.loads(path.read_text()).get(split) or []
    except (OSError, ValueError) as err:
        raise DataError(path, f"not a readable datalist ({err})") from err
    if not cases:
        raise DataError(path, f"no cases in the {split!r} split to fingerprint")
    if max_cases and len(cases) > max_cases:
        cases = [cases[i] for i in np.linspace(0, len(cases) - 1, max_cases).round().astype(int)]
    base = path.resolve().parent
    loader = None
    if bundle is not None:
        from sum_monai.bundle.readers import bundle_loader

        loader = bundle_loader(bundle)
    shapes, spacings, samples, fractions, channels = [], [], [], [], []
    for case in cases:
        image = read_image(base / _first(case["image"]), loader=loader)
        shapes.append(image.spatial_shape)
        spacings.append(image.spacing[: len(image.spatial_shape)])
        channels.append(len(case["image"]) if isinstance(case["image"], list) else image.channels)
        data = image.numpy()[0]
        samples.append(data.ravel()[:: max(1, data.size // 20000)])
        label = case.get("label")
        if label:
            masks = [read_image(base / p, loader=loader).numpy()[0] > 0 for p in (label if isinstance(label, list) else [label])]
            fractions.append(float(np.logical_or.reduce(masks).mean()))
    values = np.concatenate(samples)
    return Fingerprint(
        n_cases=len(cases),
        spatial_dims=len(shapes[0]),
        channels=int(np.median(channels)),
        median_shape=[float(v) for v in np.median(np.asarray(shapes, dtype=float), axis=0)],
        median_spacing=[float(v) for v in np.median(np.asarray(spacings, dtype=float), axis=0)],
        spacing_p10=[float(v) for v in np.percentile(np.asarray(spacings, dtype=float), 10, axis=0)],
        intensity_percentiles=[float(v) for v in np.percentile(values, [0.5, 50, 99.5])],
        foreground_fraction=float(np.mean(fractions)) if fractions else 0.0,
    )
