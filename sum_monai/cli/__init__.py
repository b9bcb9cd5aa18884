"""The ``sum-monai`` command line: one entry point, one module per subcommand.

Each module in this package that defines ``register(subparsers)`` adds one subcommand; the module
sets ``func`` on its parser to the function that runs it. Heavy imports (torch, monai, mlflow) are
done inside those functions, so ``sum-monai --help`` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

from sum_monai import __version__
from sum_monai.errors import SumMonaiError

#: Order in which subcommands are listed in ``--help`` (modules not named here come last).
ORDER = ["demo", "synth", "datalist", "validate", "plan", "train", "cv", "evaluate", "predict", "export", "bundle", "monailabel"]

DESCRIPTION = """\
Breast-cancer segmentation on MONAI: built-in phantoms, datalists, training / evaluation /
prediction with the MONAI Bundles in bundles/, exports and MLflow tracking.

Typical session:
  sum-monai demo                                   # phantoms -> train -> evaluate -> export
  sum-monai synth --modality us --n 40 --out data/phantom_us
  sum-monai datalist busi data/phantom_us --out data/phantom_us/datalist.json
  sum-monai train --bundle bundles/breast_us_seg_2d --data data/phantom_us/datalist.json
  sum-monai evaluate --bundle bundles/breast_us_seg_2d --data data/phantom_us/datalist.json
Run `sum-monai <command> --help` for each command.
"""


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every subcommand found in :mod:`sum_monai.cli`."""
    parser = argparse.ArgumentParser(
        prog="sum-monai", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"sum_monai {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    names = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    names.sort(key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    for name in names:
        module = importlib.import_module(f"{__name__}.{name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit status (0 ok, 1 partial failure, 2 usage/data error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        status = args.func(args)
    except SumMonaiError as err:
        if args.verbose:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
