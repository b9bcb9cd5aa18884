"""``sum-monai synth --modality {us,mammo,mri} --n N --out DIR``: write synthetic phantoms."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Write built-in synthetic phantoms in the real file formats, seeded and deterministic (the same
seed and settings give byte-identical files), plus DIR/overview.png (images with mask contours)
and DIR/phantom.json (settings and per-case ground truth). The folder appears complete or not
at all; an existing non-empty folder is only replaced with --overwrite, and only if it holds an
earlier phantom.

  us     breast ultrasound, BUSI layout: DIR/{benign,malignant,normal}/'<class> (N).png' with
         '<class> (N)_mask.png' (8-bit, masks 0/255; a second lesion as _mask_1.png). N = cases.
  mammo  mammography: DIR/images/<id>.dcm (DICOM MG for presentation, 12-bit, half MONOCHROME1),
         DIR/masks/<id>_mask.png, DIR/cases.csv. N = patients (2-4 images each).
  mri    breast DCE-MRI (pre + first post-contrast): DIR/imagesTr/<case>_000{0,1}.nii.gz,
         DIR/labelsTr/<case>.nii.gz, DIR/dataset.json and DICOM series DIR/dicom/<case>/{pre,post1}/.
         --layout study: DIR/dicom/<case>/ is a DICOM study folder as a scanner exports it
         (3-plane localiser, T2, the dynamic phases 'ax dyn pre', 'ax dyn 1st pass' ... with
         acquisition times and contrast tags, a derived subtraction, a T1 TSE post-contrast, a
         sagittal series, a DICOM SEG of the breasts); --phases sets the dynamic phase counts,
         cycled over the cases; --dynamic-series single puts every phase in one series.

The common difficulty flags (--size, --lesion-contrast, --noise, --lesion-size) mean slightly
different things per modality, as their help says; the full list of settings with defaults is
documented in sum_monai.phantoms.UltrasoundParams / MammoParams / MRIParams.

examples:
  sum-monai synth --modality us --n 60 --out data/phantom_us
  sum-monai synth --modality us --n 200 --out data/us_hard --lesion-contrast 0.35 --near-duplicate-rate 0.2
  sum-monai synth --modality mammo --n 20 --out data/phantom_mammo --seed 3
  sum-monai synth --modality mri --n 8 --out data/phantom_mri --format nifti
  sum-monai synth --modality mri --layout study --n 3 --phases 5 3 2 --out data/mri_studies
"""

#: settings that only some modalities have
_ONLY = {
    "near_duplicate_rate": ("us",),
    "rgb": ("us",),
    "second_lesion_rate": ("us",),
    "format": ("mri",),
    "spacing": ("mri",),
    "bpe": ("mri",),
    "layout": ("mri",),
    "phases": ("mri",),
    "dynamic_series": ("mri",),
    "pixel_spacing": ("mammo",),
    "monochrome1_rate": ("mammo",),
    "class_mix": ("us", "mammo"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``synth`` to the CLI."""
    p = subparsers.add_parser(
        "synth",
        help="write synthetic phantoms (ultrasound, mammography, MRI) with an overview PNG",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--modality", required=True, choices=["us", "mammo", "mri"], help="which phantoms")
    p.add_argument("--n", type=int, required=True, help="number of cases (mammo: patients)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to create")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0); case i depends only on seed and i")
    p.add_argument("--overwrite", action="store_true", help="replace DIR if it holds an earlier phantom")
    p.add_argument("--no-overview", dest="overview", action="store_false", help="skip overview.png")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    g = p.add_argument_group("difficulty (defaults: see the settings classes)")
    g.add_argument(
        "--size", type=int, nargs="+", metavar="N",
        help="image size: ROWS COLS (us default 256 256, mammo 512 320) or X Y Z voxels (mri 128 96 40)",
    )  # fmt: skip
    g.add_argument(
        "--lesion-contrast", type=float,
        help="us: echogenicity drop inside lesions (0-1, default 0.7); mammo: mass density relative "
        "to gland (default 0.8); mri: tumour post/pre - 1 (default 2.0)",
    )  # fmt: skip
    g.add_argument(
        "--noise", type=float,
        help="us: speckle strength 0-1 (default 1); mammo: quantum noise (0.015); mri: Rician sigma / fat (0.03)",
    )  # fmt: skip
    g.add_argument(
        "--lesion-size", type=float, nargs=2, metavar=("MIN", "MAX"),
        help="lesion radius range: us and mammo as a fraction of the image width, mri in mm",
    )  # fmt: skip
    g.add_argument(
        "--class-mix", type=float, nargs=3, metavar=("BENIGN", "MALIGNANT", "NORMAL"),
        help="class shares (us default 0.45 0.30 0.25; mammo per breast 0.35 0.35 0.30)",
    )  # fmt: skip
    g.add_argument("--near-duplicate-rate", type=float, help="us: share of near-duplicate cases (default 0)")
    g.add_argument("--second-lesion-rate", type=float, help="us: share of lesion cases with 2 lesions (0.08)")
    g.add_argument("--rgb", action="store_true", default=None, help="us: RGB PNGs with R=G=B, like BUSI")
    g.add_argument("--pixel-spacing", type=float, help="mammo: pixel size in mm (default 0.2)")
    g.add_argument("--monochrome1-rate", type=float, help="mammo: share of MONOCHROME1 patients (0.5)")
    g.add_argument("--spacing", type=float, nargs=3, metavar=("X", "Y", "Z"), help="mri: voxel size in mm")
    g.add_argument("--bpe", type=float, help="mri: background parenchymal enhancement (default 0.15)")
    g.add_argument(
        "--format", choices=["nifti", "dicom", "both"], help="mri: image files to write (default both)"
    )
    g.add_argument(
        "--layout", choices=["msd", "study"],
        help="mri: msd (channel files, default) or study (one DICOM study folder per case, as scanners export it)",
    )  # fmt: skip
    g.add_argument(
        "--phases", type=int, nargs="+", metavar="N",
        help="mri --layout study: dynamic phase counts (pre + post-contrast), cycled over cases (default 5 3 2)",
    )  # fmt: skip
    g.add_argument(
        "--dynamic-series", choices=["separate", "single"],
        help="mri --layout study: one series per phase (default) or every phase in one series",
    )  # fmt: skip
    p.set_defaults(func=run)


def _overrides(args: argparse.Namespace) -> dict:
    """Settings given on the command line, checked against the modality."""
    from sum_monai.errors import ConfigError

    names = [
        "size", "lesion_contrast", "noise", "lesion_size", "class_mix", "near_duplicate_rate",
        "second_lesion_rate", "rgb", "pixel_spacing", "monochrome1_rate", "spacing", "bpe", "format",
        "layout", "phases", "dynamic_series",
    ]  # fmt: skip
    given = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    wrong = [n for n in given if n in _ONLY and args.modality not in _ONLY[n]]
    if wrong:
        flags = ", ".join("--" + n.replace("_", "-") for n in wrong)
        raise ConfigError(f"{flags} do(es) not apply to --modality {args.modality}")
    if "size" in given:
        want = 3 if args.modality == "mri" else 2
        if len(given["size"]) != want:
            raise ConfigError(f"--size takes {want} numbers for --modality {args.modality}")
    return given


def run(args: argparse.Namespace) -> int:
    """Generate the phantoms and print where they are."""
    from sum_monai.phantoms import generate

    files = generate(
        args.modality,
        args.n,
        args.out,
        seed=args.seed,
        overwrite=args.overwrite,
        overview=args.overview,
        progress=args.progress,
        **_overrides(args),
    )
    print(
        f"wrote {len(files)} files to {args.out}"
        + (f" (overview: {args.out}/overview.png)" if args.overview else "")
    )
    return 0
