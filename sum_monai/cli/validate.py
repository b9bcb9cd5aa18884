"""``sum-monai validate FILE``: check a datalist before training."""

from __future__ import annotations

import argparse
from typing import Any

DESCRIPTION = """\
Open every file of a MONAI datalist JSON and check it can be trained on: files exist and open,
images have no NaN/Inf, image and mask sizes agree (all masks of a BUSI case too), spacings and
affines of image, label and every DCE channel agree, masks hold only the expected values
(binary {0,1} or {0,255}, or the label values declared in the datalist's meta), and no patient
group or image straddles two splits. All problems are reported together (exit status 2).

example:
  sum-monai validate data/busi/datalist.json
  sum-monai validate data/ddsm_tissue/datalist.json --label-values 64,128,192,255
"""


def register(subparsers: Any) -> None:
    """Add the ``validate`` subcommand."""
    from sum_monai.cli.datalist import _values

    p = subparsers.add_parser(
        "validate",
        help="check every file of a datalist (opens, sizes, geometry, mask values, leakage)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", metavar="FILE", help="datalist JSON")
    p.add_argument(
        "--label-values",
        type=_values,
        default=None,
        help="allowed label values (default: from the datalist meta, else binary)",
    )
    p.add_argument(
        "--bundle",
        help="open the files with this bundle's readers (what its network sees: e.g. mammograms after VOI LUT and "
        "MONOCHROME1 inversion) and check its DICOM Modality and 2D/3D",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Validate and print what was checked."""
    from sum_monai.datalists.validate import validate_datalist

    kwargs: dict[str, Any] = {}
    if args.bundle:
        from sum_monai.bundle.locate import Bundle
        from sum_monai.bundle.readers import input_checks

        kwargs = input_checks(Bundle.find(args.bundle)).as_kwargs()
    report = validate_datalist(args.file, label_values=args.label_values, progress=not args.no_progress, **kwargs)
    cases = ", ".join(f"{k} {v}" for k, v in report.cases.items())
    values = ", ".join(f"{v:g}" for v in report.label_values)
    print(f"ok: {sum(report.cases.values())} cases ({cases}), {report.files} files; mask values {{{values}}}")
    return 0
