"""``overlays.png`` of a prediction run: each predicted case with its mask outline, for a person to look at.

The image is read the way the bundle reads it (the steps of ``inference.json`` up to its ``LoadImaged``:
mammography DICOM as presented, PNG through the bundle's reader), so the picture shows what the
network saw, on the input's own grid where the mask was written.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sum_monai.bundle.locate import Bundle
from sum_monai.reports.overlays import OverlayCase, write_overlay_grid

#: Most cases drawn in one picture.
MAX_CASES = 16


def write_prediction_overlays(
    bundle: Bundle, records: Sequence[dict[str, Any]], output_dir: Path, max_cases: int = MAX_CASES
) -> Path | None:
    """Draw the predicted cases of ``records`` (those with status ok and a 2D mask) into ``output_dir/overlays.png``.

    Returns:
        the picture, or None when no 2D case was predicted.
    """
    from monai.transforms import Compose, LoadImage, LoadImaged

    from sum_monai.bundle.run import create_workflow

    steps = list(create_workflow(bundle, "inference").parser.get_parsed_content("preprocessing").transforms)
    # the bundle's steps up to its LoadImaged (input checks such as CheckModalityd, then the reader)
    loader = Compose(steps[: next(i for i, s in enumerate(steps) if isinstance(s, LoadImaged)) + 1])
    panels = []
    for record in [r for r in records if r.get("status") == "ok"][:max_cases]:
        mask_file = output_dir / record["outputs"]["mask"]
        if mask_file.suffix.lower() != ".png":
            continue
        image = np.asarray(loader({"image": record["input"][0]})["image"])
        mask = np.asarray(LoadImage(image_only=True)(str(mask_file)))
        count = record["measurements"]["lesion_count"]
        title = f"{record['case']}: {record['measurements']['predicted_class']}, {count} lesion(s)"
        panels.append(OverlayCase(title[:48], image, None, mask))
    if not panels:
        return None
    return write_overlay_grid(panels, output_dir / "overlays.png", title=f"{bundle.name} {bundle.version}")
