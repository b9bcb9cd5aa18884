"""Paired layout: ``images/`` and ``labels/`` matched by name, label = image name + a suffix.

::

    DIR/images/A_0002_1.RIGHT_MLO.png
    DIR/labels/A_0002_1.RIGHT_MLO_LI.png     (label_suffix="_LI"; values 64/128/192/255)

Optional regular expressions, searched in the image file name, give the stratification class
and the patient group: the named group ``(?P<class>...)`` / ``(?P<group>...)`` if present, else
the first group, else the whole match. For the DDSM tissue set: ``class_regex="^([A-D])"``
(BI-RADS density from the first letter) and ``group_regex="^[A-D]_\\d+"`` (DDSM case).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from sum_monai.datalists.cases import Case, LabelSpec, Scan, no_cases, raise_all, rel, require_folder
from sum_monai.errors import DataError
from sum_monai.io.read import image_suffix

log = logging.getLogger(__name__)


def _stem(path: Path) -> str:
    suffix = image_suffix(path)
    return path.name[: -len(suffix)] if suffix else path.stem


def regex_value(pattern: re.Pattern[str], name: str, group: str) -> str | None:
    """Value of ``pattern`` in ``name``: named group ``group``, else group 1, else the match."""
    match = pattern.search(name)
    if not match:
        return None
    if group in pattern.groupindex:
        return match.group(group)
    return match.group(1) if pattern.groups else match.group(0)


def _compile(pattern: str | None, option: str) -> re.Pattern[str] | None:
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error as err:
        from sum_monai.errors import ConfigError

        raise ConfigError(f"{option} '{pattern}' is not a valid regular expression: {err}") from err


def scan_paired(
    root: str | Path,
    label_suffix: str = "",
    class_regex: str | None = None,
    group_regex: str | None = None,
    label_values: tuple[int, ...] = (),
    images_dir: str = "images",
    labels_dir: str = "labels",
) -> Scan:
    """Match ``root/images/*`` with ``root/labels/<image stem><label_suffix>.<any image suffix>``.

    Args:
        root: dataset folder.
        label_suffix: added to the image stem to name its label (``"_LI"`` for DDSM tissue).
        class_regex: gives the stratification class from the image file name.
        group_regex: gives the patient group from the image file name.
        label_values: declared label-map values; empty for binary masks.
        images_dir, labels_dir: sub-folder names.

    Raises:
        DataError: missing folders or no image found (message shows the expected layout).
        DataErrors: images without label, ambiguous labels, names the regexes do not match.
        ConfigError: a regex does not compile.
    """
    root = Path(root)
    example = f"{images_dir}/case1.png with {labels_dir}/case1{label_suffix}.png"
    require_folder(root, "paired", example)
    class_rx = _compile(class_regex, "--class-regex")
    group_rx = _compile(group_regex, "--group-regex")
    images_root, labels_root = root / images_dir, root / labels_dir
    for folder in (images_root, labels_root):
        if not folder.is_dir():
            raise DataError(folder, f"folder not found: the paired layout expects {root / example}")
    labels: dict[str, list[Path]] = {}
    for path in sorted(labels_root.iterdir()):
        if not path.name.startswith(".") and (path.is_dir() or image_suffix(path)):
            labels.setdefault(_stem(path), []).append(path)
    cases: list[Case] = []
    errors: list[DataError] = []
    used: set[str] = set()
    for image in sorted(images_root.iterdir()):
        if image.name.startswith(".") or not (image.is_dir() or image_suffix(image)):
            continue
        want = _stem(image) + label_suffix
        found = labels.get(want, [])
        if len(found) != 1:
            problem = (
                f"no label: expected {labels_root / want}.<png|nii.gz|...>"
                if not found
                else f"{len(found)} labels named {want}.*: keep one"
            )
            errors.append(DataError(image, problem))
            continue
        used.add(want)
        cls = regex_value(class_rx, image.name, "class") if class_rx else None
        patient = regex_value(group_rx, image.name, "group") if group_rx else None
        if class_rx and cls is None:
            errors.append(DataError(image, f"name does not match --class-regex '{class_regex}'"))
            continue
        if group_rx and patient is None:
            errors.append(DataError(image, f"name does not match --group-regex '{group_regex}'"))
            continue
        cases.append(
            Case(
                key=rel(image, root),
                image=rel(image, root),
                label=rel(found[0], root),
                cls=cls,
                patient=patient,
            )
        )
    raise_all(errors, f"paired folder {root}")
    if not cases:
        raise no_cases(root, "paired", example)
    unused = len(set(labels) - used)
    if unused:
        log.warning("%d label file(s) in %s match no image and are left out", unused, labels_dir)
    return Scan(layout="paired", root=root, cases=cases, labels=LabelSpec(tuple(sorted(label_values))))
