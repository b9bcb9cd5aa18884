"""Train a bundle (its configs/train.json) on a dataset, tracked in MLflow."""

from __future__ import annotations

import argparse

from sum_monai.cli._common import (
    add_bundle_arg,
    add_resource_args,
    add_runtime_args,
    parse_overrides,
    print_table,
)

EPILOG = """\
examples:
  sum-monai train --bundle bundles/breast_us_seg_2d --data data/busi --epochs 50
  sum-monai train --bundle breast_us_seg_2d --data runs/datalist.json --set image_size=128
  sum-monai train --bundle breast_us_seg_2d --resume                 # continue the newest run
  sum-monai train --bundle breast_us_seg_2d --data runs/datalist.json --init runs/a/models/model.pt  # warm start
  sum-monai train --bundle breast_us_seg_2d --data data/busi --nproc-per-node 2   # DDP via torchrun

A run is a bundle: runs/<bundle>/<time>/bundle/<bundle>/ is written first, the bundle with the
recipe (--set, --config, --epochs) in its configs, and training runs that folder; when it
finishes its models/ holds model.pt (best validation Dice) and model.ts, ready for
`python -m monai.bundle run`, `sum-monai evaluate/predict --bundle`, the model zoo and MONAI Label.
What is not recipe (--data, --output, --device, --precision, --init, --workers, --cache-rate) is never written
into it. A killed run continues from its last finished epoch with --resume (checkpoints are
written atomically). The run folder also holds learning_curve.png and the bundle zip; the MLflow
run holds parameters, per-epoch metrics, artifacts and a new version of the registered model.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a bundle on a dataset (MLflow-tracked, resumable)",
        description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    add_bundle_arg(p)
    p.add_argument("--data", help="datalist JSON, or a dataset folder (BUSI, mammography, paired or Decathlon layout)")
    p.add_argument("--output", help="run folder (default runs/<bundle>/<time>; with --resume: the newest run)")
    p.add_argument("--epochs", type=int, help="total number of epochs")
    p.add_argument("--resume", action="store_true", help="continue a killed or finished run from models/last.pt")
    p.add_argument(
        "--init", metavar="WEIGHTS",
        help="warm start: begin from these network weights (e.g. an earlier run's models/model.pt); optimizer, "
        "learning-rate schedule and epochs start fresh (config key initial_weights)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of the train/validation/test split of a folder")
    p.add_argument("--nproc-per-node", type=int, default=1, help="train with DDP in N processes through torchrun")
    add_resource_args(p)
    add_runtime_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sum_monai.tracking.store import ui_command
    from sum_monai.workflows.train import train

    result = train(
        args.bundle, data=args.data, output=args.output, epochs=args.epochs, device=args.device,
        resume=args.resume, tracking_uri=args.tracking_uri, overrides=parse_overrides(args.overrides, args.config_files),
        nproc_per_node=args.nproc_per_node, seed=args.seed, initial_weights=args.init, num_workers=args.workers,
        cache_rate=args.cache_rate, precision=args.precision,
    )  # fmt: skip
    best = "-" if result.best_val_dice is None else f"{result.best_val_dice:.4f}"
    print_table(
        [
            ("run folder", str(result.run_dir)),
            ("epochs", str(result.epochs)),
            ("best validation Dice", best),
            ("weights", str(result.model_pt)),
            ("TorchScript", str(result.model_ts)),
            ("learning curve", str(result.learning_curve)),
            ("trained bundle", str(result.trained_bundle)),
            ("bundle archive", str(result.archive)),
            ("MLflow run", f"{result.run_name} ({result.mlflow_run_id})"),
            ("registered model", f"{result.registered_model} version {result.registered_version}"),
            ("MLflow UI", ui_command(result.tracking_uri)),
        ],
        title="training finished",
    )
    return 0
