"""Cross-validate a recipe: train every fold of a folded datalist, evaluate each out of fold, print mean +- sd."""

from __future__ import annotations

import argparse

from sum_monai.cli._common import add_bundle_arg, add_resource_args, add_runtime_args, parse_overrides
from sum_monai.errors import ConfigError

EPILOG = """\
examples:
  sum-monai datalist busi ../shared/data/busi --out runs/cv/busi_folds.json --folds 5
  sum-monai cv --bundle breast_us_seg_2d --data runs/cv/busi_folds.json --config configs/busi_cv.json \\
      --output runs/cv/busi_base
  sum-monai cv --bundle breast_us_seg_2d --data runs/cv/busi_folds.json --config configs/busi_cv.json \\
      --config configs/busi_aug_nnunet.json --output runs/cv/busi_aug   # one lever more
  sum-monai cv ... --folds 0,1          # only these folds (others later, into the same --output)
  sum-monai cv ... --init bundles/breast_us_seg_2d --output runs/cv/busi_restart   # fold k from member k
  sum-monai cv ... --no-train --package runs/cv/busi_bundle --version 0.5.0   # the fold ensemble as a bundle
  sum-monai cv --bundle breast_us_seg_2d --data runs/cv/busi_folds.json --members --output runs/cv/shipped
      # re-score the shipped members out of fold (member k on fold k), no training
  sum-monai cv ... --members bundles/breast_us_seg_2d /tmp/older/breast_us_seg_2d --output runs/cv/snapshots
      # fold k: the mean of both bundles' fold-k members (an ensemble of restart snapshots)

Fold k trains on the other folds into OUTPUT/fold<k>/ and is scored on fold k with the weights of
its last epoch (no epoch is picked on the fold's own images). Rerunning the same command skips
finished folds and resumes a killed one. In MLflow every fold run is a child of one parent run
cv-<OUTPUT name>, which also gets the mean and sd of every metric.
"""


def _fold_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated fold numbers, got {text!r}") from err


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cv", help="cross-validate a recipe over the folds of a datalist (mean +- sd per metric)",
        description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    add_bundle_arg(p)
    p.add_argument("--data", required=True, help="datalist JSON made with `sum-monai datalist ... --folds K`")
    p.add_argument("--output", required=True, help="CV folder (fold runs in OUTPUT/fold<k>/)")
    p.add_argument("--epochs", type=int, help="epochs per fold")
    p.add_argument("--folds", type=_fold_list, help="train only these folds, e.g. 0,1 (default all)")
    p.add_argument(
        "--init", metavar="BUNDLE|WEIGHTS",
        help="warm-start each fold: from the member of a CV-packaged bundle (folder or name) trained for that fold "
        "on the same folds (checked), or from a weights path ({fold} becomes the fold number; checked against the "
        "cv.json of the CV it lies in); schedule and epochs start fresh",
    )  # fmt: skip
    p.add_argument("--no-train", action="store_true", help="only evaluate the folds already trained")
    p.add_argument(
        "--members", nargs="*", metavar="BUNDLE",
        help="score the fold members of CV-packaged bundles of these folds instead of training (none named: "
        "--bundle's): member k predicts fold k; with several bundles, the mean of their fold-k members",
    )  # fmt: skip
    p.add_argument(
        "--max-normal-fp", type=float, default=0.15, metavar="SHARE",
        help="operating point: the lesion score threshold is the smallest whose normal images with a predicted "
        "lesion stay within SHARE on the other folds (default 0.15)",
    )  # fmt: skip
    p.add_argument(
        "--package", metavar="DIR",
        help="write DIR as one bundle: the fold models as an ensemble, the CV's recipe, post-processing and figures",
    )  # fmt: skip
    p.add_argument("--version", help="with --package: the packaged bundle's version")
    p.add_argument(
        "--finished-only", action="store_true",
        help="with --package: package the finished folds even if some are not (the metadata says how many)",
    )
    p.add_argument("--changelog", help="with --package: its changelog entry")
    add_resource_args(p)
    add_runtime_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sum_monai.workflows.cv import report_folds, run_folds, score_members

    overrides = parse_overrides(args.overrides, args.config_files)
    if args.members is not None:
        if args.package or overrides or args.init:
            raise ConfigError("--members scores packaged members as they are: no --package, --init, --config or --set")
        score_members(args.members or [args.bundle], args.data, args.output, tracking_uri=args.tracking_uri)
    elif not args.no_train:
        run_folds(
            args.bundle, args.data, args.output, overrides=overrides, folds=args.folds, epochs=args.epochs,
            device=args.device, tracking_uri=args.tracking_uri, num_workers=args.workers, cache_rate=args.cache_rate,
            precision=args.precision, initial_weights=args.init,
        )  # fmt: skip
    report = report_folds(args.bundle, args.output, max_normal_fp=args.max_normal_fp)
    print(report.text)
    print(f"\nwrote {report.markdown} and {report.json}")
    if args.package:
        from sum_monai.bundle.from_cv import package_cv

        packaged = package_cv(
            args.bundle, args.output, args.package, version=args.version, changelog=args.changelog,
            finished_only=args.finished_only,
        )
        members = sorted(p.name for p in (packaged.root / "models").glob("*.pt"))
        print(f"packaged {packaged.root}: {', '.join(members)} + model.ts (version {packaged.version})")
    return 0
