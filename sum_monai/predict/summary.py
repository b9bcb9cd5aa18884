"""Numbers of one prediction: lesions, their size in mm, class and probabilities; the folder's CSV.

Definitions (the same for every bundle):

- a *lesion* is a connected component of the predicted non-background voxels (full
  connectivity: 8 neighbours in 2D, 26 in 3D, as MONAI's ``KeepLargestConnectedComponent``);
- its *class* is the class most of its voxels were given (ties go to the higher class, e.g.
  malignant over benign);
- its *size* is its voxel count times the voxel area (2D, mm^2) or volume (3D, mm^3); ``None``
  when the input has no physical spacing (PNG without ``--pixel-spacing``);
- *lesion probability* of a voxel is ``1 - p(background)`` from the softmax after ``Invertd``
  (on the input grid); a lesion's ``prob_mean`` / ``prob_max`` are taken over its voxels;
- the case's ``predicted_class`` is the highest class present (``malignant`` > ``benign``), or
  ``normal`` when no lesion is predicted.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sum_monai.utils.atomic import atomic_write_text

__all__ = ["CSV_COLUMNS", "NO_LESION", "measure", "write_predictions_csv"]

#: ``predicted_class`` of a case without lesions.
NO_LESION = "normal"
CSV_COLUMNS = (
    "case", "case_id", "input", "status", "error", "predicted_class", "lesion_count", "lesion_pixels",
    "lesion_area_mm2", "lesion_volume_mm3", "lesion_prob_mean", "lesion_prob_max", "spacing_mm", "mask", "dicom_seg",
)  # fmt: skip


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(float(x), digits)


def measure(
    label_map: np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    voxel_size: float | None,
) -> dict[str, Any]:
    """Measure the lesions of a label map.

    Args:
        label_map: predicted labels on the input grid, 2D or 3D (0 = background).
        probabilities: ``(classes, *label_map.shape)`` softmax on the same grid.
        class_names: name of each label value (``["background", "benign", "malignant"]``).
        voxel_size: area (2D, mm^2) or volume (3D, mm^3) of one pixel / voxel, or None if unknown.

    Returns:
        ``lesion_count``, ``lesion_pixels``, ``lesion_area_mm2`` (2D) or ``lesion_volume_mm3``
        (3D), ``predicted_class``, ``class_pixels``, ``probability`` (``lesion_mean``,
        ``lesion_max``, ``image_max``) and ``lesions`` (one dict per lesion, largest first).

    Example:
        >>> import numpy as np
        >>> lab = np.zeros((6, 6), np.uint8); lab[1:3, 1:3] = 1; lab[4, 4] = 2
        >>> prob = np.stack([1.0 - 0.8 * (lab > 0), 0.8 * (lab == 1), 0.8 * (lab == 2)])
        >>> m = measure(lab, prob, ["background", "benign", "malignant"], voxel_size=0.25)
        >>> m["lesion_count"], m["lesion_area_mm2"], m["predicted_class"], m["lesions"][0]["class"]
        (2, 1.25, 'malignant', 'benign')
    """
    from scipy.ndimage import find_objects

    lab = np.asarray(label_map)
    if lab.dtype.kind not in "biu":  # an argmax kept as floats: whole numbers, counted as integers
        lab = np.rint(lab).astype(np.int64)
    prob = np.asarray(probabilities)
    if prob.shape[1:] != lab.shape:
        raise ValueError(f"probabilities {prob.shape} do not match the label map {lab.shape}")
    size_key = "area_mm2" if lab.ndim == 2 else "volume_mm3"
    # float32 and the lesions' bounding box only: a scanner-size volume is 32 M voxels, its lesions a few thousand
    lesion_prob = 1.0 - prob[0].astype(np.float32, copy=False)
    inside = lab > 0
    box = find_objects(inside.astype(np.uint8))
    lesions = _lesions(lab, lesion_prob, box[0], class_names, voxel_size, size_key) if box else []
    in_lesions = lesion_prob[box[0]][inside[box[0]]] if box else np.zeros(0, np.float32)  # every lesion voxel lies in the box
    counts = [int(np.count_nonzero(lab == i)) for i in range(len(class_names))]
    total = int(in_lesions.size)
    present = [i for i in range(1, len(class_names)) if counts[i]]
    return {
        "lesion_count": len(lesions),
        "lesion_pixels": total,
        f"lesion_{size_key}": _round(total * voxel_size) if voxel_size is not None else None,
        "predicted_class": class_names[present[-1]] if present else NO_LESION,
        "class_pixels": {name: int(counts[i]) for i, name in enumerate(class_names)},
        "probability": {
            "lesion_mean": _round(in_lesions.mean(dtype=np.float64)) if total else None,
            "lesion_max": _round(in_lesions.max()) if total else None,
            "image_max": _round(lesion_prob.max()),
        },
        "lesions": lesions,
    }


def _lesions(
    lab: np.ndarray, lesion_prob: np.ndarray, box: tuple[slice, ...], class_names: Sequence[str],
    voxel_size: float | None, size_key: str,
) -> list[dict[str, Any]]:
    """The connected lesions inside ``box`` (the bounding box of every lesion voxel), largest first, in image coordinates."""
    from skimage.measure import label, regionprops

    offset = np.array([b.start for b in box])
    crop = lab[box]
    lesions = []
    probs = lesion_prob[box].astype(np.float64)  # the crop only: means summed in float64 as before
    for region in regionprops(label(crop > 0, connectivity=lab.ndim), intensity_image=probs):
        votes = np.bincount(crop[region.slice][region.image].ravel(), minlength=len(class_names))
        votes[0] = 0
        cls = int(len(votes) - 1 - np.argmax(votes[::-1]))  # most voxels; ties to the higher class
        n = int(region.area)
        lesions.append(
            {
                "class": class_names[cls],
                "pixels": n,
                size_key: _round(n * voxel_size) if voxel_size is not None else None,
                "centroid": [round(float(c), 2) for c in np.asarray(region.centroid) + offset],
                "bbox": [int(b) for b in np.asarray(region.bbox) + np.tile(offset, 2)],
                "prob_mean": _round(region.intensity_mean),
                "prob_max": _round(region.intensity_max),
            }
        )
    lesions.sort(key=lambda d: -d["pixels"])
    for i, lesion in enumerate(lesions, start=1):
        lesion["index"] = i
    return lesions


def csv_row(record: dict[str, Any]) -> dict[str, Any]:
    """One ``predictions.csv`` row from a case record (see :func:`write_predictions_csv`)."""
    m = record.get("measurements") or {}
    prob = m.get("probability") or {}
    spacing = record.get("spacing_mm")
    outputs = record.get("outputs") or {}
    row = {
        "case": record.get("case"), "case_id": record.get("case_id"), "input": ";".join(record.get("input", [])),
        "status": record.get("status"), "error": record.get("error", ""),
        "predicted_class": m.get("predicted_class"), "lesion_count": m.get("lesion_count"),
        "lesion_pixels": m.get("lesion_pixels"), "lesion_area_mm2": m.get("lesion_area_mm2"),
        "lesion_volume_mm3": m.get("lesion_volume_mm3"), "lesion_prob_mean": prob.get("lesion_mean"),
        "lesion_prob_max": prob.get("lesion_max"), "spacing_mm": "x".join(f"{s:g}" for s in spacing) if spacing else None,
        "mask": outputs.get("mask"), "dicom_seg": outputs.get("dicom_seg"),
    }  # fmt: skip
    return {k: "" if v is None else v for k, v in row.items()}


def write_predictions_csv(records: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write ``predictions.csv``: one row per case (failed ones with ``status=failed`` and ``error``)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow(csv_row(record))
    return atomic_write_text(path, buf.getvalue())
