"""Mammography layout: a CSV table of images (DICOM MG or PNG) with binary lesion masks.

::

    DIR/cases.csv
        image,mask,patient_id,laterality,view,pathology
        images/p001_L_CC.dcm,masks/p001_L_CC.png,p001,L,CC,benign
        images/p002_R_MLO.dcm,masks/p002_R_MLO.png,,R,MLO,normal

Paths are relative to ``DIR`` (or absolute). ``mask`` is a binary PNG of the image's size (all
zero for a normal image). ``pathology`` is normal, benign or malignant and gives ``lesion_class``
0, 1, 2 (the bundle multiplies the mask by it). Images of one patient share a ``group``; where
``patient_id`` is empty the DICOM ``PatientID`` tag is used; the raw ids are only ever hashed.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from sum_monai.datalists.cases import Case, LabelSpec, Scan, no_cases, raise_all, require_folder
from sum_monai.errors import DataError

log = logging.getLogger(__name__)

COLUMNS = ("image", "mask", "patient_id", "laterality", "view", "pathology")
PATHOLOGIES = {"normal": 0, "benign": 1, "malignant": 2}
EXAMPLE = "cases.csv with columns " + ",".join(COLUMNS)


def _relative(value: str, root: Path) -> tuple[Path, str]:
    """Resolve a CSV path and give its key relative to ``root`` (POSIX) when it lies below it."""
    path = Path(value)
    full = path if path.is_absolute() else root / path
    try:
        key = full.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        key = full.as_posix()
    return full, key


def _dicom_patient_id(path: Path) -> str:
    """PatientID tag of a DICOM file ('' when absent); only the header is read."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientID"])
    except Exception as err:
        raise DataError(path, f"cannot read the DICOM header for PatientID: {err}") from err
    return str(ds.get("PatientID", "") or "").strip()


def scan_mammo(root: str | Path, csv_name: str = "cases.csv") -> Scan:
    """Read ``root/cases.csv`` into cases (one per row).

    Args:
        root: dataset folder.
        csv_name: table file inside ``root``.

    Returns:
        cases sorted by image path; class = pathology; patient = the patient id (raw, hashed
        later) or None.

    Raises:
        DataError: missing table or columns, or an empty table.
        DataErrors: every bad row (unknown pathology, missing image/mask cell, unreadable
            DICOM header), all listed.
    """
    root = Path(root)
    require_folder(root, "mammography", EXAMPLE)
    table = root / csv_name
    if not table.is_file():
        raise DataError(table, f"not found: the mammography layout expects {root / EXAMPLE}")
    with table.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise DataError(
                table, f"missing column(s) {', '.join(missing)}; the header must be {','.join(COLUMNS)}"
            )
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    cases: list[Case] = []
    errors: list[DataError] = []
    no_patient = 0
    for line, row in enumerate(rows, start=2):
        pathology = row["pathology"].lower()
        if pathology not in PATHOLOGIES:
            errors.append(
                DataError(
                    table, f"line {line}: pathology '{row['pathology']}' is not normal, benign or malignant"
                )
            )
            continue
        if not row["image"] or not row["mask"]:
            errors.append(
                DataError(table, f"line {line}: empty image or mask cell (every image needs a mask)")
            )
            continue
        image, key = _relative(row["image"], root)
        _, mask_key = _relative(row["mask"], root)
        patient = row["patient_id"] or None
        if patient is None and image.is_file() and image.suffix.lower() != ".png":
            try:
                patient = _dicom_patient_id(image) or None
            except DataError as err:
                errors.append(err)
                continue
        no_patient += patient is None
        cases.append(
            Case(
                key=key,
                image=key,
                label=mask_key,
                cls=pathology,
                patient=patient,
                extra={
                    "lesion_class": PATHOLOGIES[pathology],
                    "laterality": row["laterality"],
                    "view": row["view"],
                },
            )
        )
    raise_all(errors, str(table))
    if not cases:
        raise no_cases(root, "mammography", EXAMPLE)
    if no_patient:
        log.warning(
            "%d image(s) have no patient id (CSV or DICOM PatientID): each is its own group", no_patient
        )
    cases.sort(key=lambda c: c.key)
    return Scan(
        layout="mammo", root=root, cases=cases, labels=LabelSpec(), notes={"no_patient_id": no_patient}
    )
