"""BUSI layout: breast ultrasound PNGs in one folder per class, masks next to their image.

::

    DIR/benign/benign (3).png           image (RGB or grey)
    DIR/benign/benign (3)_mask.png      lesion mask (1-bit, grey, RGB or RGBA)
    DIR/benign/benign (3)_mask_1.png    a second lesion of the same image (and _mask_2 ...)
    DIR/normal/normal (1).png           normal cases have an all-zero mask
    DIR/malignant/...

Each image becomes one case whose ``label`` is the list of all its masks (merged by the bundle),
with ``class`` (the folder) and ``lesion_class`` 0 normal, 1 benign, 2 malignant.
"""

from __future__ import annotations

import re
from pathlib import Path

from sum_monai.datalists.cases import Case, LabelSpec, Scan, no_cases, raise_all, rel, require_folder
from sum_monai.errors import DataError

#: Class folders and their lesion class.
CLASSES = {"normal": 0, "benign": 1, "malignant": 2}
EXAMPLE = "benign/benign (1).png with benign/benign (1)_mask.png"
_MASK = re.compile(r"^(?P<image>.+)_mask(?:_(?P<n>\d+))?$")


def _mask_order(path: Path) -> int:
    match = _MASK.match(path.stem)
    return int(match.group("n") or -1) if match else 0


def scan_busi(root: str | Path) -> Scan:
    """Find the BUSI cases below ``root``.

    Args:
        root: folder holding ``benign/``, ``malignant/`` and/or ``normal/``.

    Returns:
        the cases sorted by image path (binary masks).

    Raises:
        DataError: ``root`` missing, no class folder, or no case found (message names the
            layout with an example path).
        DataErrors: images without a mask and masks without an image, all listed.
    """
    root = Path(root)
    require_folder(root, "BUSI", EXAMPLE)
    folders = [root / name for name in CLASSES if (root / name).is_dir()]
    if not folders:
        raise no_cases(root, "BUSI", EXAMPLE)
    cases: list[Case] = []
    errors: list[DataError] = []
    for folder in folders:
        pngs = sorted(
            p for p in folder.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith(".")
        )
        masks: dict[str, list[Path]] = {}
        images = []
        for png in pngs:
            match = _MASK.match(png.stem)
            if match:
                masks.setdefault(match.group("image"), []).append(png)
            else:
                images.append(png)
        for image in images:
            found = sorted(masks.pop(image.stem, []), key=_mask_order)
            if not found:
                errors.append(DataError(image, f"no mask: expected '{image.stem}_mask.png' next to it"))
                continue
            if _mask_order(found[0]) != -1:  # _mask_1 ... without _mask: the first lesion is lost
                others = ", ".join(f"'{m.name}'" for m in found)
                errors.append(
                    DataError(
                        image,
                        f"'{image.stem}_mask.png' is missing but {others} exist: the first lesion's mask "
                        f"would be lost (rename the masks to '{image.stem}_mask.png', '{image.stem}_mask_1.png', ...)",
                    )
                )
                continue
            cases.append(
                Case(
                    key=rel(image, root),
                    image=rel(image, root),
                    label=[rel(m, root) for m in found],
                    cls=folder.name,
                    extra={"lesion_class": CLASSES[folder.name]},
                )
            )
        for stem, orphans in sorted(masks.items()):
            for mask in orphans:
                errors.append(DataError(mask, f"mask without an image: '{stem}.png' is missing"))
    raise_all(errors, f"BUSI folder {root}")
    if not cases:
        raise no_cases(root, "BUSI", EXAMPLE)
    cases.sort(key=lambda c: c.key)
    return Scan(layout="busi", root=root, cases=cases, labels=LabelSpec())
