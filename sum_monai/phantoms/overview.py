"""Overview PNG of a phantom (or real) folder: a grid of up to 8 images with mask contours.

It reads the files back from disk (not the generator's arrays), so what it shows is what a user
of the folder gets: mammograms are displayed as a viewer would (through the mammography bundle's own presentation: VOI window applied, MONOCHROME1
inverted), MRI as the axial slice through the tumour centre, pre- and post-contrast side by side.
Works on any folder in the same layouts (BUSI, mammography CSV, nnU-Net MRI).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from sum_monai.errors import DataError
from sum_monai.utils.atomic import atomic_path

__all__ = ["write_overview"]

_CLASSES = ("benign", "malignant", "normal")


def _natural(path: Path) -> tuple:
    """Sort key that puts ``benign (2)`` before ``benign (10)``."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name))


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("L"))


def _us_panels(root: Path, max_cases: int) -> list[tuple[str, np.ndarray, list[np.ndarray]]]:
    """Round-robin over the class folders so every class is shown."""
    per_class = {}
    for name in _CLASSES:
        images = [p for p in (root / name).glob("*.png") if "_mask" not in p.name]
        per_class[name] = sorted(images, key=_natural)
    picked: list[Path] = []
    while len(picked) < max_cases and any(per_class.values()):
        for name in _CLASSES:
            if per_class[name] and len(picked) < max_cases:
                picked.append(per_class[name].pop(0))
    panels = []
    for image in picked:
        masks = sorted(image.parent.glob(f"{image.stem}_mask*.png"), key=_natural)
        panels.append((image.stem, _read_png(image), [_read_png(m) > 127 for m in masks]))
    return panels


def _display_mammogram(path: Path) -> np.ndarray:
    """Pixel values in [0, 1] as the mammography bundle presents them (its reader's ``presentation_array``)."""
    import pydicom

    from sum_monai.bundle.locate import REPO_BUNDLES
    from sum_monai.bundle.scripts import import_bundle_scripts

    mammo = import_bundle_scripts(REPO_BUNDLES / "mammo_seg_2d", "mammo")
    return np.asarray(mammo.presentation_array(pydicom.dcmread(path), normalize=True), dtype=np.float32)


def _mammo_panels(root: Path, max_cases: int) -> list[tuple[str, np.ndarray, list[np.ndarray]]]:
    table = root / "cases.csv"
    if not table.is_file():
        raise DataError(table, "missing: a mammography folder needs cases.csv")
    with table.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    # show lesions of both kinds and a normal image first
    order = sorted(rows, key=lambda r: ({"malignant": 0, "benign": 1}.get(r["pathology"], 2), r["image"]))
    chosen = [r for r in order if r["pathology"] != "normal"][: max_cases - 2]
    chosen += [r for r in order if r["pathology"] == "normal"][: max_cases - len(chosen)]
    chosen = sorted(chosen, key=lambda r: r["image"])
    panels = []
    for row in chosen:
        title = f"{row['patient_id']} {row['laterality']} {row['view']} {row['pathology']}"
        panels.append((title, _display_mammogram(root / row["image"]), [_read_png(root / row["mask"]) > 127]))
    return panels


def _read_series(folder: Path) -> np.ndarray:
    """A DICOM series written by this package as an (x, y, z) array.

    Hand-written (a sort by ImagePositionPatient) because the overview only needs the axial
    series :mod:`sum_monai.phantoms.mri` writes, and ITK would slow the generator's import.
    """
    import pydicom

    slices = [pydicom.dcmread(p) for p in folder.glob("*.dcm")]
    slices.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    return np.stack([ds.pixel_array for ds in slices], axis=-1).transpose(1, 0, 2)


def _mri_panels(root: Path, max_cases: int) -> list[tuple[str, np.ndarray, list[np.ndarray]]]:
    import nibabel as nib

    from sum_monai.phantoms.mri import tumour_center_slice

    labels = sorted((root / "labelsTr").glob("*.nii.gz"), key=_natural)[: max(1, max_cases // 2)]
    panels = []
    for label_path in labels:
        case = label_path.name[: -len(".nii.gz")]
        label = np.asarray(nib.load(label_path).dataobj)
        k = tumour_center_slice(label)
        volumes = []
        for c, channel in enumerate(("pre", "post1")):
            nifti = root / "imagesTr" / f"{case}_{c:04d}.nii.gz"
            series = root / "dicom" / case / channel
            if not series.is_dir():  # a study folder (layout "study"): the named dynamic series
                pattern = "*-ax_dyn_pre" if channel == "pre" else "*-ax_dyn_1st_pass"
                series = next(iter(sorted((root / "dicom" / case).glob(pattern))), series)
            if nifti.is_file():
                volumes.append((channel, np.asarray(nib.load(nifti).dataobj)))
            elif series.is_dir():
                volumes.append((channel, _read_series(series)))
        if len(volumes) < 2:
            continue  # every phase in one series: no panel
        top = max(float(np.percentile(v, 99.5)) for _, v in volumes) or 1.0
        for channel, volume in volumes:
            # axial slice as displayed: anterior at the top, patient right on the left
            image = np.clip(volume[:, :, k].T.astype(np.float32) / top, 0.0, 1.0)
            panels.append((f"{case} {channel} z={k}", image, [label[:, :, k].T > 0]))
    return panels


def write_overview(
    modality: str,
    root: str | Path,
    out: str | Path | None = None,
    max_cases: int = 8,
    title: str | None = None,
) -> Path:
    """Draw up to ``max_cases`` images of a folder with their mask contours into one PNG.

    Args:
        modality: ``"us"`` (BUSI layout), ``"mammo"`` (``cases.csv`` layout) or ``"mri"``
            (``labelsTr`` + ``imagesTr`` or ``dicom`` series; 2 panels per case).
        root: the folder.
        out: the PNG to write; defaults to ``root/overview.png``.
        max_cases: number of panels (MRI: pre + post of ``max_cases // 2`` cases).
        title: figure title; defaults to the folder name.

    Returns:
        The PNG path.

    Raises:
        DataError: the folder has no images in the expected layout.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    root = Path(root)
    out = Path(out) if out is not None else root / "overview.png"
    readers = {"us": _us_panels, "mammo": _mammo_panels, "mri": _mri_panels}
    if modality not in readers:
        raise DataError(root, f"unknown modality {modality!r}; expected one of {sorted(readers)}")
    panels = readers[modality](root, max_cases)
    if not panels:
        raise DataError(root, f"no {modality} images found to draw an overview")
    cols = min(4, len(panels))
    rows = (len(panels) + cols - 1) // cols
    height, width = panels[0][1].shape
    panel_w = 2.6
    panel_h = panel_w * height / width + 0.3
    fig = Figure(figsize=(panel_w * cols, panel_h * rows), dpi=100)
    FigureCanvasAgg(fig)
    for i, (caption, image, masks) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(image, cmap="gray", interpolation="nearest")
        for mask in masks:
            if mask.any():
                ax.contour(mask.astype(np.float32), levels=[0.5], colors="red", linewidths=0.8)
        ax.set_title(caption, fontsize=7)
        ax.set_axis_off()
    fig.suptitle(f"{title or root.name}: {modality} (red: mask contours)", fontsize=8)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    return out
