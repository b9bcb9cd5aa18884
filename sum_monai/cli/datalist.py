"""``sum-monai datalist {busi,mammo,mias,paired,msd} DIR --out FILE``: scan, split, validate, write."""

from __future__ import annotations

import argparse
from typing import Any

DESCRIPTION = """\
Scan a dataset folder in one of the supported layouts and write a MONAI datalist JSON
(training / validation / test, paths relative to the JSON's folder). Splits are seeded and
group-aware: images of one patient and near-duplicate images never straddle two splits, and
classes are stratified where the layout has them. Every file is opened and checked before the
JSON is written (skip with --no-validate); on any problem nothing is written.
Run `sum-monai datalist <layout> --help` for each layout.

examples:
  sum-monai datalist busi data/busi --out data/busi/datalist.json --seed 1
  sum-monai datalist paired data/ddsm_tissue --out data/ddsm_tissue/datalist.json \\
      --label-suffix _LI --class-regex '^([A-D])' --label-values 64,128,192,255
  sum-monai datalist msd data/mri --out data/mri/datalist.json --val-frac 0.2 --test-frac 0
"""

LAYOUT_HELP = {
    "busi": (
        "breast ultrasound, BUSI folders",
        "DIR/{benign,malignant,normal}/'<class> (N).png' with '<class> (N)_mask.png' (and _mask_1 ...).\n"
        "Near-duplicate images are grouped by perceptual hash.\n\n"
        "example:\n  sum-monai datalist busi data/busi --out data/busi/datalist.json --seed 1",
    ),
    "mammo": (
        "mammography, DICOM/PNG images listed in cases.csv",
        "DIR/cases.csv with columns image,mask,patient_id,laterality,view,pathology\n"
        "(pathology normal/benign/malignant; masks binary PNG of the image's size; empty patient_id:\n"
        "the DICOM PatientID tag is used, hashed).\n\n"
        "example:\n  sum-monai datalist mammo data/mammo --out data/mammo/datalist.json",
    ),
    "mias": (
        "mammography, mini-MIAS films (mdbNNN.pgm + Info.txt) as downloaded",
        "DIR/Info.txt (the database README, one row per abnormality) and DIR/mdbNNN.pgm.\n"
        "Label maps (0 background/normal tissue, 1 benign, 2 malignant) are drawn from the circles\n"
        "(origin bottom-left) into FILE's folder (<FILE stem>_labels/), never into DIR; films of one\n"
        "woman (2k-1 right, 2k left) stay together; films whose abnormalities have no coordinates\n"
        "(diffuse calcifications) are left out and counted.\n\n"
        "example:\n  sum-monai datalist mias ../shared/data/mias --out runs/mias/datalist.json --folds 5",
    ),
    "paired": (
        "images/ and labels/ matched by name",
        "DIR/images/NAME.png with DIR/labels/NAME<suffix>.png; optional regexes on the image file\n"
        "name give the stratification class and the patient group.\n\n"
        "example (DDSM tissue, BI-RADS density from the first letter, 4 label values):\n"
        "  sum-monai datalist paired data/ddsm_tissue --out data/ddsm_tissue/datalist.json \\\n"
        "      --label-suffix _LI --class-regex '^([A-D])' --label-values 64,128,192,255",
    ),
    "msd": (
        "MRI, Decathlon / nnU-Net folders (NIfTI, NRRD or DICOM series)",
        "DIR/dataset.json + DIR/labelsTr/<case>.nii.gz with channels as DIR/imagesTr/<case>_0000.nii.gz,\n"
        "_0001 ... or one 4D DIR/imagesTr/<case>.nii.gz, or DICOM series DIR/dicom/<case>/<channel>/\n"
        "(channel names from dataset.json channel_names).\n\n"
        "example:\n  sum-monai datalist msd data/mri --out data/mri/datalist.json --seed 0",
    ),
}


def _values(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from err


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"fraction must be in [0, 1), got {text}")
    return value


def _common(p: argparse.ArgumentParser, near_default: bool) -> None:
    p.add_argument("dir", metavar="DIR", help="dataset folder")
    p.add_argument("--out", required=True, metavar="FILE", help="datalist JSON to write")
    p.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    p.add_argument(
        "--val-frac", type=_fraction, default=None, help="validation fraction (default 0.15; 0 allowed)"
    )
    p.add_argument(
        "--test-frac",
        type=_fraction,
        default=None,
        help="test fraction (default 0.15, or 0 with --folds: cross-validate the whole pool)",
    )
    p.add_argument(
        "--folds",
        type=int,
        default=0,
        metavar="K",
        help="K group-aware cross-validation folds over every case outside test (a 'fold' key per "
        "case; fold 0 is the validation list); run them with `sum-monai cv`",
    )
    p.add_argument("--no-validate", action="store_true", help="write without opening and checking every file")
    p.add_argument(
        "--near-dups",
        action=argparse.BooleanOptionalAction,
        default=near_default,
        help=f"group near-duplicate images by perceptual hash (default {'on' if near_default else 'off'})",
    )
    p.add_argument(
        "--near-dup-threshold",
        type=int,
        default=None,
        metavar="BITS",
        help="Hamming threshold of the 256-bit hash (default 84, measured on BUSI)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def register(subparsers: Any) -> None:
    """Add the ``datalist`` subcommand with one sub-subcommand per layout."""
    parser = subparsers.add_parser(
        "datalist",
        help="scan a dataset folder and write a validated, leakage-free datalist JSON",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    layouts = parser.add_subparsers(dest="layout", metavar="{busi,mammo,mias,paired,msd}", required=True)
    for name, (short, long) in LAYOUT_HELP.items():
        p = layouts.add_parser(
            name,
            help=short,
            description=f"{short}.\n\n{long}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _common(p, near_default=name == "busi")
        if name == "mammo":
            p.add_argument("--csv", default="cases.csv", help="table inside DIR (default cases.csv)")
        if name == "paired":
            p.add_argument("--label-suffix", default="", help="label name = image stem + this (e.g. _LI)")
            p.add_argument(
                "--class-regex", help="regex on the image file name giving the class, e.g. '^([A-D])'"
            )
            p.add_argument(
                "--group-regex", help="regex on the image file name giving the patient, e.g. '^[A-D]_\\d+'"
            )
            p.add_argument(
                "--label-values",
                type=_values,
                default=(),
                help="declared label values, e.g. 64,128,192,255 (default binary)",
            )
            p.add_argument("--images-dir", default="images", help="image sub-folder (default images)")
            p.add_argument("--labels-dir", default="labels", help="label sub-folder (default labels)")
        if name == "msd":
            p.add_argument(
                "--group-regex", help="regex on the case name giving the patient, e.g. '^(P\\d+)_'"
            )
        p.set_defaults(func=run)


def format_counts(datalist: dict[str, Any]) -> str:
    """Table of cases per split and class, as printed by the command."""
    meta = datalist["meta"]
    classes = meta["classes"] or []
    head = ["split", *classes, "total"]
    rows = [
        [split, *(str(meta["counts"][split].get(c, 0)) for c in classes), str(meta["counts"][split]["total"])]
        for split in ("training", "validation", "test")
    ]
    rows.append(
        [
            "all",
            *(
                str(sum(meta["counts"][s].get(c, 0) for s in ("training", "validation", "test")))
                for c in classes
            ),
            str(sum(meta["counts"][s]["total"] for s in meta["counts"])),
        ]
    )
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(row: list[str]) -> str:
        cells = zip(row, widths, strict=True)
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(cells))

    return "\n".join([line(head), *(line(r) for r in rows)])


def format_fold_counts(meta: dict[str, Any]) -> str:
    """Table of cases per cross-validation fold and class."""
    classes = meta["classes"] or []
    head = ["fold", *classes, "total"]
    rows = [[k, *(str(row.get(c, 0)) for c in classes), str(row["total"])] for k, row in meta["folds"]["counts"].items()]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in [head, *rows])


def run(args: argparse.Namespace) -> int:
    """Build and write the datalist, then print the counts table."""
    from sum_monai.datalists.build import build_datalist
    from sum_monai.datalists.near_dups import DEFAULT_THRESHOLD
    from sum_monai.errors import ConfigError

    options: dict[str, Any] = {}
    if args.layout == "mammo":
        options["csv_name"] = args.csv
    if args.layout == "paired":
        options.update(
            label_suffix=args.label_suffix,
            class_regex=args.class_regex,
            group_regex=args.group_regex,
            label_values=args.label_values,
            images_dir=args.images_dir,
            labels_dir=args.labels_dir,
        )
    if args.layout == "msd":
        options["group_regex"] = args.group_regex
    if args.folds and args.val_frac is not None:
        raise ConfigError("--val-frac and --folds exclude each other: with --folds every fold is a validation set")
    if args.folds == 1 or args.folds < 0:
        raise ConfigError(f"--folds needs at least 2 folds, got {args.folds}")
    datalist = build_datalist(
        args.layout,
        args.dir,
        args.out,
        seed=args.seed,
        val_frac=0.15 if args.val_frac is None else args.val_frac,
        test_frac=(0.0 if args.folds else 0.15) if args.test_frac is None else args.test_frac,
        folds=args.folds,
        near_dups=args.near_dups,
        near_dup_threshold=args.near_dup_threshold
        if args.near_dup_threshold is not None
        else DEFAULT_THRESHOLD,
        validate=not args.no_validate,
        progress=not args.no_progress,
        **options,
    )
    meta = datalist["meta"]
    print(format_counts(datalist))
    if "folds" in meta:
        print(format_fold_counts(meta))
    near = meta["near_duplicates"]
    if near["checked"]:
        print(f"near-duplicate groups: {near['n_groups']} holding {near['n_images']} images")
    print(
        f"independent groups: {meta['groups']}; validated: {'yes' if meta['validated'] else 'no (--no-validate)'}"
    )
    print(f"wrote {args.out}")
    return 0
