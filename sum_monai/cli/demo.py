"""Run the whole pipeline on built-in phantoms: synthesise, train, evaluate, export, track."""

from __future__ import annotations

import argparse
import time

EPILOG = """\
The demo needs no data and no GPU. It writes into --out (default demo_output/):
phantoms of each modality with overview PNGs, a training run of bundles/breast_us_seg_2d on
ultrasound phantoms (learning curve, TorchScript, packaged bundle), its evaluation on held-out
phantoms (per-case metrics, overlays), and an MLflow run with a registered model in the store
(default sqlite:///mlruns.db in the current folder).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="phantoms -> train -> evaluate -> export -> MLflow, in a few minutes on a CPU",
        description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("--out", default="demo_output", help="output folder (replaced)")
    p.add_argument("--cases", type=int, default=None, help="number of ultrasound phantoms (default 100)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: configs/demo_us.json)")
    p.add_argument("--seed", type=int, default=0, help="seed of phantoms and split")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--tracking-uri", default=None, help="MLflow store (default sqlite:///mlruns.db here)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sum_monai.cli._common import print_table
    from sum_monai.tracking.store import ui_command
    from sum_monai.workflows import demo

    start = time.perf_counter()
    result = demo.run_demo(
        out_dir=args.out,
        n_cases=args.cases or demo.DEMO_CASES,
        epochs=args.epochs,
        seed=args.seed,
        tracking_uri=args.tracking_uri,
        device=args.device,
    )
    total = time.perf_counter() - start
    print(f"\nheld-out ultrasound phantoms (test split):\n{result.table}")
    rows = [(f"time: {k}", f"{v:.0f} s") for k, v in result.timings.items()]
    rows += [("time: total", f"{total:.0f} s")]
    rows += [("mean Dice (test lesions)", f"{result.test_dice:.3f} over {result.test_cases} test images with a lesion")]
    rows += [("TorchScript vs checkpoint", f"max |diff| {result.torchscript_max_abs_diff:.2e}")]
    rows += [(k, str(v)) for k, v in result.paths.items()]
    rows += [("registered model", result.registered), ("MLflow UI", ui_command(result.tracking_uri))]
    print_table(rows, title="sum_monai demo summary")
    return 0
