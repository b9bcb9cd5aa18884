"""A bundle's own image loading, for package code that must read images as the network sees them.

Validation, fingerprints and prediction checks open files before the bundle's transforms run;
given a bundle they open them with that bundle's ``LoadImaged`` (its readers: e.g. the
mammography bundle's ``scripts.mammo.MammoDicomReader``, which applies the VOI LUT and inverts
MONOCHROME1, and ``scripts.pil.GreyReader``), so a figure about an image (intensity range,
shape, spacing) is a figure about what the network is given, from one implementation.

Example:
    >>> from sum_monai.bundle.locate import Bundle
    >>> load = bundle_loader(Bundle.find("mammo_seg_2d"))  # doctest: +SKIP
    >>> load("film.dcm").shape                             # doctest: +SKIP
    torch.Size([1, 3328, 4084])
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sum_monai.bundle.locate import Bundle
from sum_monai.errors import ConfigError

#: Config ids holding the transforms that read a case, in the order they are looked for.
LOAD_IDS = ("load_transforms", "preprocessing")


@dataclass(frozen=True)
class InputChecks:
    """What a bundle asks of its input images, for checks made before its transforms run.

    Attributes:
        loader: the bundle's own ``LoadImage`` (:func:`bundle_loader`).
        modality: the DICOM Modality its metadata declares (None: any).
        spatial_dims: 2 or 3 (the length of its input ``spatial_shape``).
    """

    loader: Callable[[str], Any]
    modality: str | None
    spatial_dims: int

    def as_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`sum_monai.datalists.validate.validate_datalist`."""
        return {"loader": self.loader, "modality": self.modality, "spatial_dims": self.spatial_dims}


def input_checks(bundle: Bundle) -> InputChecks:
    """The :class:`InputChecks` of ``bundle`` (metadata and ``inference.json``)."""
    meta = bundle.metadata["network_data_format"]["inputs"]["image"]
    return InputChecks(bundle_loader(bundle), str(meta.get("modality") or "") or None, len(meta["spatial_shape"]))


def bundle_loader(bundle: Bundle) -> Callable[[str], Any]:
    """The ``LoadImage`` of the bundle's ``LoadImaged`` (channel-first ``MetaTensor`` of one path).

    Raises:
        ConfigError: the bundle's inference config reads no images with ``LoadImaged``.
    """
    return _loader(str(bundle.root))


@functools.lru_cache(maxsize=8)
def _loader(root: str) -> Callable[[str], Any]:
    from monai.transforms import Compose, LoadImaged

    from sum_monai.bundle.run import create_workflow

    parser = create_workflow(Bundle(Path(root)), "inference").parser
    for key in LOAD_IDS:
        if key not in parser:
            continue
        content = parser.get_parsed_content(key)
        steps = content.transforms if isinstance(content, Compose) else content
        for step in steps:
            if isinstance(step, LoadImaged):
                return step._loader  # MONAI keeps the configured LoadImage there; it is what reads each key
    raise ConfigError(f"{root}: no LoadImaged in {' or '.join(LOAD_IDS)} of configs/inference.json")
