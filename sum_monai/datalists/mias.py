"""mini-MIAS layout: ``mdbNNN.pgm`` films and the database README ``Info.txt``, as users download them.

::

    DIR/Info.txt        the README with one row per abnormality (normal films: one NORM row)
    DIR/mdb001.pgm      binary PGM (P5), 8-bit, 1024 x 1024, 200 micron pixels
    ...

A row reads ``mdb005 F CIRC B 477 133 30``: reference, background tissue (F fatty, G
fatty-glandular, D dense-glandular), abnormality class (CALC, CIRC, SPIC, MISC, ARCH, ASYM, NORM),
severity (B, M), then the centre x y and the radius of *a circle enclosing the abnormality*.
The quirks handled here:

* the coordinate origin is the **bottom-left** corner: image row = height - 1 - y, column = x;
* a film can have several rows (several lesions, possibly of different severity): its label map
  holds every circle (0 normal tissue and background, 1 benign, 2 malignant; malignant wins where
  circles overlap) and its film class is the worst severity;
* some rows have no coordinates (diffuse calcifications, ``*NOTE 3*``, and one mass): there is no
  location to learn or score against, so a film whose abnormalities are all unlocated is left out
  of the datalist and counted in ``meta.mias.unlocated_films`` (a film with located and unlocated
  rows keeps its located circles);
* the radius encloses the abnormality: the label is a disc, not an outline (scores against it are
  detection scores first; Dice against discs is a secondary figure);
* films come in pairs per woman (odd number right, even left): the pair is one group that no
  split or fold may cut.

Label maps are written as PNG into ``label_dir`` (next to the datalist, never into the dataset
folder); the circles themselves go to ``meta.lesions`` (by ``case_id``) for detection scoring.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sum_monai.datalists.cases import Case, LabelSpec, Scan, raise_all, require_folder
from sum_monai.errors import DataError

INFO = "Info.txt"
TISSUES = {"F": "fatty", "G": "fatty-glandular", "D": "dense-glandular"}
ABNORMALITIES = ("CALC", "CIRC", "SPIC", "MISC", "ARCH", "ASYM", "NORM")
#: How the abnormality classes are reported: masses, calcifications, other (distortion, asymmetry).
ABNORMALITY_GROUP = {
    "CIRC": "mass", "SPIC": "mass", "MISC": "mass", "CALC": "calcification", "ARCH": "other", "ASYM": "other",
}  # fmt: skip
SEVERITY_LABEL = {"B": 1, "M": 2}
FILM_CLASS = {0: "normal", 1: "benign", 2: "malignant"}
_ROW = re.compile(r"^(mdb\d{3})\s+(\S+)\s+(\S+)(.*)$")


@dataclass(frozen=True)
class MiasRow:
    """One row of ``Info.txt``.

    Attributes:
        line: line number in the file (1-based), for error messages.
        ref: film reference (``mdb005``).
        tissue: background tissue letter (F, G, D).
        abnormality: abnormality class (``NORM`` for a normal film).
        severity: ``B`` or ``M``; None for a normal film.
        x, y: centre in MIAS coordinates (origin bottom-left), None when the row gives none.
        radius: radius of the enclosing circle in pixels, None when the row gives none.
    """

    line: int
    ref: str
    tissue: str
    abnormality: str
    severity: str | None = None
    x: int | None = None
    y: int | None = None
    radius: int | None = None

    @property
    def located(self) -> bool:
        """True when the row gives a centre and a radius."""
        return self.x is not None and self.y is not None and self.radius is not None

    def row_col(self, height: int) -> tuple[int, int]:
        """Image (row, column) of the centre: the origin of MIAS coordinates is the bottom-left corner."""
        assert self.x is not None and self.y is not None
        return height - 1 - self.y, self.x


def parse_info(path: Path) -> list[MiasRow]:
    """Read the table of a mini-MIAS ``Info.txt`` (lines starting ``mdbNNN``; the prose is skipped).

    Raises:
        DataError: the file is missing or holds no table row.
        DataErrors: every malformed row (unknown tissue, class or severity, a partial or
            non-numeric location), each naming its line.

    Example:
        >>> rows = parse_info(Path("../shared/data/mias/Info.txt"))  # doctest: +SKIP
        >>> rows[0].ref, rows[0].abnormality, rows[0].severity, rows[0].row_col(1024)  # doctest: +SKIP
        ('mdb001', 'CIRC', 'B', (598, 535))
    """
    if not path.is_file():
        raise DataError(path, "not found: the mias layout needs the database README Info.txt beside the films")
    rows: list[MiasRow] = []
    errors: list[DataError] = []
    for number, text in enumerate(path.read_text(encoding="latin-1").splitlines(), start=1):
        match = _ROW.match(text.strip())
        if not match:
            continue
        try:
            rows.append(_parse_row(number, *match.groups()))
        except ValueError as err:
            errors.append(DataError(path, f"line {number} ({text.strip()!r}): {err}"))
    raise_all(errors, str(path))
    if not rows:
        raise DataError(path, "no table rows (lines 'mdbNNN TISSUE CLASS [SEVERITY X Y RADIUS]')")
    return rows


def _parse_row(line: int, ref: str, tissue: str, abnormality: str, rest: str) -> MiasRow:
    if tissue not in TISSUES:
        raise ValueError(f"background tissue {tissue!r} is not one of {', '.join(TISSUES)}")
    if abnormality not in ABNORMALITIES:
        raise ValueError(f"abnormality class {abnormality!r} is not one of {', '.join(ABNORMALITIES)}")
    fields = rest.split()
    if abnormality == "NORM":
        return MiasRow(line, ref, tissue, abnormality)
    if not fields or fields[0] not in SEVERITY_LABEL:
        raise ValueError("an abnormality needs its severity B or M")
    numbers = fields[1:]
    if not numbers or numbers[0].startswith("*"):  # '*NOTE 3*': diffuse calcifications, no location
        return MiasRow(line, ref, tissue, abnormality, fields[0])
    if len(numbers) != 3 or not all(v.isdigit() for v in numbers):
        raise ValueError("the location must be three whole numbers: centre x, centre y, radius")
    x, y, radius = (int(v) for v in numbers)
    if radius <= 0:
        raise ValueError(f"radius {radius} is not positive")
    return MiasRow(line, ref, tissue, abnormality, fields[0], x, y, radius)


def film_size(path: Path) -> tuple[int, int]:
    """(height, width) of a film from its header (no decoding).

    Raises:
        DataError: the file cannot be opened as an image.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            width, height = im.size
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(path, f"not a readable PGM film ({err})") from err
    return height, width


def circle_label(rows: Iterable[MiasRow], height: int, width: int) -> np.ndarray:
    """Label map ``(height, width)`` uint8 of a film's circles: 1 benign, 2 malignant (malignant wins)."""
    label = np.zeros((height, width), dtype=np.uint8)
    rr, cc = np.ogrid[:height, :width]
    for row in sorted((r for r in rows if r.located), key=lambda r: SEVERITY_LABEL[r.severity or "B"]):
        r0, c0 = row.row_col(height)
        disc = (rr - r0) ** 2 + (cc - c0) ** 2 <= int(row.radius or 0) ** 2
        label[disc] = np.maximum(label[disc], SEVERITY_LABEL[row.severity or "B"])
    return label


def _check_rows(info: Path, rows: list[MiasRow], sizes: dict[str, tuple[int, int]]) -> list[DataError]:
    errors = []
    for row in rows:
        if row.ref not in sizes:
            errors.append(DataError(info, f"line {row.line}: names film {row.ref}.pgm, which is not in {info.parent}"))
            continue
        height, width = sizes[row.ref]
        if row.located and not (0 <= int(row.x or 0) < width and 0 <= int(row.y or 0) < height):
            errors.append(
                DataError(info, f"line {row.line}: centre ({row.x}, {row.y}) of {row.ref} lies outside the {width}x{height} film")
            )
    return errors


def _write_png(path: Path, label: np.ndarray) -> None:
    from PIL import Image

    from sum_monai.utils.atomic import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(label).save(tmp, format="PNG")


def scan_mias(root: str | Path, label_dir: str | Path | None = None) -> Scan:
    """Read a mini-MIAS folder into cases, writing one circle label map per film into ``label_dir``.

    Args:
        root: folder with ``Info.txt`` and the ``mdbNNN.pgm`` films.
        label_dir: where label maps ``mdbNNN_label.png`` are written (default: ``labels`` beside
            the datalist, chosen by :func:`~sum_monai.datalists.build.build_datalist`); never
            inside ``root``.

    Returns:
        one case per located film: class = worst severity (normal/benign/malignant), patient =
        the woman (films 2k-1 and 2k), ``tissue``, ``laterality`` and ``abnormality`` fields, and
        ``notes`` with the circles per case and the unlocated films.

    Raises:
        DataError / DataErrors: no ``Info.txt``, a bad row, a row naming a missing film, a centre
        outside its film, a film without a row, a label folder inside the dataset.
    """
    from sum_monai.datalists.ids import case_id

    root = Path(root)
    require_folder(root, "mias", f"{INFO} and mdb001.pgm ...")
    info = root / INFO
    rows = parse_info(info)
    if label_dir is None:
        raise DataError(root, "the mias layout writes label maps: give label_dir (the datalist's folder)")
    label_dir = Path(label_dir)
    if label_dir.resolve().is_relative_to(root.resolve()):
        raise DataError(label_dir, f"label maps are never written into the dataset folder {root}; write the datalist elsewhere")
    films = {p.stem: p for p in sorted(root.glob("mdb*.pgm"))}
    errors: list[DataError] = []
    sizes: dict[str, tuple[int, int]] = {}
    for ref, path in films.items():
        try:
            sizes[ref] = film_size(path)
        except DataError as err:
            errors.append(err)
    errors += _check_rows(info, rows, sizes)
    by_film: dict[str, list[MiasRow]] = {}
    for row in rows:
        by_film.setdefault(row.ref, []).append(row)
    errors += [DataError(films[ref], f"film has no row in {INFO}") for ref in films if ref not in by_film]
    raise_all(errors, f"mias dataset {root}")
    cases, lesions, unlocated = [], {}, []
    for ref, film_rows in sorted(by_film.items()):
        abnormal = [r for r in film_rows if r.abnormality != "NORM"]
        if abnormal and not any(r.located for r in abnormal):
            unlocated.append(ref)
            continue
        severity = max((SEVERITY_LABEL[r.severity or "B"] for r in abnormal if r.located), default=0)
        height, width = sizes[ref]
        label_path = label_dir / f"{ref}_label.png"
        _write_png(label_path, circle_label(film_rows, height, width))
        key = films[ref].name
        number = int(ref[3:])
        cases.append(
            Case(
                key=key, image=key, label=str(label_path.resolve()), cls=FILM_CLASS[severity],
                patient=f"mias-woman-{(number + 1) // 2}",
                extra={
                    "tissue": film_rows[0].tissue,
                    "laterality": "R" if number % 2 else "L",
                    "abnormality": ",".join(sorted({r.abnormality for r in abnormal if r.located})) or "NORM",
                },
            )
        )  # fmt: skip
        lesions[case_id(key)] = [_lesion(r, height) for r in abnormal if r.located]
    notes: dict[str, Any] = {
        "mias": {
            "films": len(films), "rows": len(rows), "label_dir": str(label_dir.resolve()),
            "unlocated_films": len(unlocated),
            "unlocated_rule": "films whose abnormalities have no coordinates (diffuse calcifications) are left out",
            "coordinates": "MIAS origin bottom-left; row = height - 1 - y",
        },
        "lesions": lesions,
    }  # fmt: skip
    return Scan(layout="mias", root=root, cases=cases, labels=LabelSpec((0, 1, 2)), notes=notes)


def _lesion(row: MiasRow, height: int) -> dict[str, Any]:
    r, c = row.row_col(height)
    return {
        "row": r, "col": c, "radius": row.radius, "abnormality": row.abnormality,
        "group": ABNORMALITY_GROUP[row.abnormality], "severity": row.severity,
    }  # fmt: skip
