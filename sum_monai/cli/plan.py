"""Derive preprocessing from the data: fingerprint a datalist, write bundle overrides.

Measures the training cases (shapes, spacings, intensities, lesion share) and writes an override
file with the input size (2D) or target spacing and patch size (3D) that fit them, plus the
fingerprint itself as a comment. Pass it to training with `--config`.
"""

from __future__ import annotations

import argparse

EPILOG = """\
examples:
  sum-monai plan data/busi/datalist.json --out configs/plan_busi.json
  sum-monai plan data/mri/datalist.json --out configs/plan_mri.json --max-roi 96 96 32
  sum-monai train --bundle breast_mri_seg_3d --data data/mri/datalist.json --config configs/plan_mri.json
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan", help="fingerprint a datalist and derive preprocessing overrides (nnU-Net style)",
        description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("datalist", help="datalist JSON (its training split is measured)")
    p.add_argument("--out", required=True, help="override file to write (JSON)")
    p.add_argument("--max-size", type=int, default=256, help="largest 2D input size (compute budget)")
    p.add_argument("--max-roi", type=int, nargs=3, default=[128, 128, 48], help="largest 3D patch")
    p.add_argument("--max-cases", type=int, default=200, help="measure at most this many cases")
    p.add_argument("--bundle", help="read the images with this bundle's readers (the intensities its network sees)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from sum_monai.plans import fingerprint, plan_overrides
    from sum_monai.utils.atomic import atomic_write_text

    bundle = None
    if args.bundle:
        from sum_monai.bundle.locate import Bundle

        bundle = Bundle.find(args.bundle)
    fp = fingerprint(args.datalist, max_cases=args.max_cases, bundle=bundle)
    overrides = plan_overrides(fp, max_size=args.max_size, max_roi=tuple(args.max_roi))
    content = {"_comment": f"derived by `sum-monai plan {args.datalist}`", "_fingerprint": fp.to_dict(), **overrides}
    atomic_write_text(args.out, json.dumps(content, indent=2) + "\n")
    for key, value in fp.to_dict().items():
        print(f"{key:24s} {value}")
    print(f"\noverrides -> {args.out}: {json.dumps(overrides)}")
    return 0
