"""Percent breast density from a tissue-segmentation evaluation, ranked against BI-RADS.

Reads an evaluation folder written by `sum-monai evaluate` for a tissue model (configs/ddsm_tissue.json:
0 background, 1 fat, 2 fibroglandular, 3 pectoral), computes the percent fibroglandular tissue of
every image from the prediction and from the expert label, and Spearman's rank correlation of
each with the BI-RADS density category of the case (the datalist's class, A-D).
"""

from __future__ import annotations

import argparse

EPILOG = """\
example:
  sum-monai evaluate --bundle mammo_seg_2d --run runs/ddsm/tissue --split test
  sum-monai density --eval runs/ddsm/tissue/evaluation-test
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "density", help="percent fibroglandular tissue per image and its rank agreement with BI-RADS",
        description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("--eval", required=True, help="evaluation folder (holds cases.json and predictions/)")
    p.add_argument("--fat", type=int, default=1, help="fat label in the predictions (default 1)")
    p.add_argument("--fibroglandular", type=int, default=2, help="fibroglandular label in the predictions (default 2)")
    p.add_argument("--ref-fat", type=int, default=128, help="fat value in the reference label files (DDSM: 128)")
    p.add_argument(
        "--ref-fibroglandular", type=int, default=192, help="fibroglandular value in the reference files (DDSM: 192)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import numpy as np
    from monai.transforms import LoadImage

    from sum_monai.errors import DataError
    from sum_monai.reports.density import density_report, percent_fibroglandular
    from sum_monai.reports.tables import write_json
    from sum_monai.utils.atomic import atomic_write_text

    folder = Path(args.eval)
    index = folder / "cases.json"
    if not index.is_file():
        raise DataError(folder, "no cases.json: not an evaluation folder written by `sum-monai evaluate`")
    cases = json.loads(index.read_text())
    load = LoadImage(image_only=True)
    predicted, reference, category = {}, {}, {}
    for cid, files in cases.items():
        if not files.get("prediction") or not files.get("class"):
            continue
        predicted[cid] = percent_fibroglandular(np.asarray(load(files["prediction"])), args.fat, args.fibroglandular)
        label = files["label"][0] if isinstance(files["label"], list) else files["label"]
        if label:
            reference[cid] = percent_fibroglandular(np.asarray(load(label)), args.ref_fat, args.ref_fibroglandular)
        category[cid] = str(files["class"])
    report = density_report(predicted, reference, category)
    lines = ["case_id,category,predicted_percent,reference_percent"]
    lines += [f"{r['case_id']},{r['category']},{r['predicted_percent']:.2f},{r['reference_percent']:.2f}" for r in report.rows]
    atomic_write_text(folder / "density.csv", "\n".join(lines) + "\n")
    summary = {
        "n": len(report.rows),
        "spearman_predicted_vs_birads": report.spearman_predicted,
        "spearman_reference_vs_birads": report.spearman_reference,
        "pearson_predicted_vs_reference": report.pearson_predicted_vs_reference,
        "mean_abs_difference_percent_points": report.mean_abs_difference,
    }
    write_json(summary, folder / "density.json")
    for key, value in summary.items():
        print(f"{key:38s} {value:.3f}" if isinstance(value, float) else f"{key:38s} {value}")
    print(f"per-image table: {folder / 'density.csv'}")
    return 0
