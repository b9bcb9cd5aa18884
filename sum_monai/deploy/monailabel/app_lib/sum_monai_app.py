"""MONAI Label's app base class with uploads checked before they reach the datastore.

Written by sum_monai into the app as ``lib/sum_monai_app.py`` (see
``sum_monai.deploy.monailabel.prepare_app``); the app's ``main.py`` imports ``MONAILabelApp``
from here instead of from MONAI Label. Runs inside MONAI Label's environment (no sum_monai there).

MONAI Label 0.8.5 stores whatever a viewer uploads (``PUT /datastore/image``, ``PUT
/datastore/label``); a label of the wrong size, a corrupt file or a label with values no bundle
knows only shows up later, as a training that fails or learns from garbage. Here the local
datastore opens every upload first and answers a bad one with HTTP 422 (404 for a label of an
unknown image) and a message saying what is wrong; nothing is written then, so the datastore,
and the model trained from it, stay as they were.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi import HTTPException
from monailabel.config import settings
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.app import MONAILabelApp as _MONAILabelApp

logger = logging.getLogger(__name__)

#: File endings read as 2D images (anything else with 3 or 4 axes is a volume).
FLAT_ENDINGS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def read_array(path: str, what: str) -> np.ndarray:
    """The array of an uploaded file as MONAI reads it (``LoadImage``), or HTTP 422 saying why not."""
    from monai.transforms import LoadImage

    try:
        return np.asarray(LoadImage(image_only=True)(path))
    except Exception as err:
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise HTTPException(status_code=422, detail=f"the {what} is not a readable image file ({first})") from err


def _size(shape: tuple[int, ...]) -> str:
    return " x ".join(str(s) for s in shape)


def spatial_dims(path: str) -> int:
    """2 for a flat image (PNG: ``(W, H)`` or ``(W, H, RGB)``), else 3 (a volume, channels last)."""
    return 2 if path.lower().endswith(FLAT_ENDINGS) else 3


class CheckedLocalDatastore(LocalDatastore):
    """A ``LocalDatastore`` that refuses uploads it cannot use.

    Args:
        known_labels: ``known_labels(dims)`` returns ``{value: "name (bundle)"}`` of the label values
            the served bundles of that many spatial dimensions know (0 is background).
        args, kwargs: those of ``LocalDatastore``.
    """

    def __init__(self, *args: Any, known_labels: Callable[[int], dict[int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._known_labels = known_labels

    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any]) -> str:
        """Store the image if it opens as an image; HTTP 422 otherwise."""
        image = read_array(image_filename, "image")
        if image.ndim < 2 or min(image.shape) < 1:
            raise HTTPException(status_code=422, detail=f"the image has shape {image.shape}, not an image")
        return super().add_image(image_id, image_filename, image_info)

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        """Store the label if it fits its image and the served bundles' labels; HTTP 404 / 422 otherwise."""
        if image_id not in self._datastore.objects:
            raise HTTPException(
                status_code=404,
                detail=f"no image {image_id!r} in the datastore; upload the image first (PUT /datastore/image)",
            )
        image_path = self.get_image_uri(image_id)
        image = read_array(image_path, "image of this label")
        label = read_array(label_filename, "label")
        while label.ndim > 2 and label.shape[-1] == 1:  # a trailing channel of size 1
            label = label[..., 0]
        dims = spatial_dims(image_path)
        if label.ndim != dims or tuple(image.shape[:dims]) != tuple(label.shape):
            raise HTTPException(
                status_code=422,
                detail=f"the label is {_size(label.shape)} but its image {image_id!r} is {_size(image.shape[:dims])}: "
                "a label must have the size of its image (one value per pixel or voxel)",
            )
        values = np.unique(label)
        known = self._known_labels(dims)
        whole = values[np.isclose(values, np.round(values))].round().astype(np.int64)
        unknown = sorted({float(v) for v in values} - {float(v) for v in whole if int(v) in known})
        if unknown:
            shown = ", ".join(f"{v:g}" for v in unknown[:10])
            names = ", ".join(f"{k} {v}" for k, v in sorted(known.items())) or f"none (no served bundle takes {dims}D images)"
            raise HTTPException(
                status_code=422,
                detail=f"the label holds value(s) {shown} that no served {dims}D bundle knows; the label values are: {names}",
            )
        return super().save_label(image_id, label_filename, label_tag, label_info)


class MONAILabelApp(_MONAILabelApp):
    """``monailabel.interfaces.app.MONAILabelApp`` whose local datastore checks uploads (see module)."""

    def init_datastore(self) -> Any:
        if self.studies.startswith(("http://", "https://")):
            return super().init_datastore()  # DICOMweb: the server there keeps its own rules
        return CheckedLocalDatastore(
            self.studies,
            extensions=settings.MONAI_LABEL_DATASTORE_FILE_EXT,
            auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
            read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY,
            known_labels=self.known_labels,
        )

    def known_labels(self, dims: int) -> dict[int, str]:
        """``{0: "background", 1: "lesion (breast_us_seg_2d)", ...}`` of the served models of ``dims`` dimensions."""
        out: dict[int, str] = {}
        for name, task in (getattr(self, "_infers", None) or {}).items():
            if getattr(task, "dimension", None) != dims:
                continue
            out.setdefault(0, "background")
            labels = task.labels if isinstance(task.labels, dict) else {}
            for label, value in labels.items():
                out[int(value)] = f"{label} ({name})" if int(value) not in out else f"{out[int(value)]}, {label} ({name})"
        return out


__all__ = ["CheckedLocalDatastore", "MONAILabelApp"]
