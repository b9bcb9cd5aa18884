"""Evaluate trained weights of a bundle on a dataset split, per case and summarised."""

from __future__ import annotations

import argparse

from sum_monai.cli._common import add_bundle_arg, add_runtime_args, parse_overrides, print_table

EPILOG = """\
examples:
  sum-monai evaluate --bundle bundles/breast_us_seg_2d --data ../shared/data/busi --split validation
  sum-monai evaluate --bundle breast_us_seg_2d --run runs/breast_us_seg_2d/20261122-101500
  sum-monai evaluate --bundle breast_us_seg_2d --data my_busi_folder --split all

Metrics (Dice, IoU, precision, recall, F1, HD95) are computed by the bundle's evaluate.json on
the input's own pixel grid; per_case.csv holds one row per anonymised case ID, summary.json the
means over all cases and per class, overlays.png the best and worst cases.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="evaluate trained weights on a dataset split",
        description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    add_bundle_arg(p)
    p.add_argument("--data", help="datalist JSON or dataset folder (default: the datalist of --run)")
    p.add_argument("--run", help="training run folder whose models/model.pt is evaluated")
    p.add_argument("--weights", help="a model.pt to evaluate (default: --run's, else the bundle's models/model.pt)")
    p.add_argument("--split", default="test", choices=["training", "validation", "test", "all"], help="split to score")
    p.add_argument("--output", help="output folder (default <run>/evaluation-<split> or runs/<bundle>/eval-<time>)")
    p.add_argument("--seed", type=int, default=0, help="split seed when --data is a folder (as used for training)")
    add_runtime_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sum_monai.workflows.evaluate import evaluate

    result = evaluate(
        args.bundle, data=args.data, run=args.run, weights=args.weights, split=args.split, output=args.output,
        device=args.device, tracking_uri=args.tracking_uri, overrides=parse_overrides(args.overrides, args.config_files), seed=args.seed,
        precision=args.precision,
    )  # fmt: skip
    print(f"\n{result.table}\n")
    print_table(
        [
            ("per-case metrics", str(result.per_case_csv)),
            ("summary", str(result.summary_json)),
            ("overlays", str(result.overlays_png)),
            ("MLflow run", result.mlflow_run_id or "-"),
        ]
    )
    return 0
