"""``python -m bench infer2d|infer3d|train|predict|all [--quick] [--write]``: run benchmarks, print markdown.

Examples:
    python -m bench infer2d                      # both 2D bundles, every backend
    python -m bench infer3d --quick              # smoke run (fewer repeats, no setting sweep)
    python -m bench predict                      # sum-monai predict end to end vs the network alone
    python -m bench train --write                # and replace its section of docs/benchmarks.md
    python -m bench infer2d --weights breast_us_seg_2d=runs/busi/pilotA/models/model.pt
    python -m bench all --write                  # what `make bench` runs (--write added by hand)
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path

import torch

from bench.machine import Machine, describe, matmul_peak, set_threads
from bench.report import DOC, write_section

BENCHMARKS = ("infer2d", "infer3d", "train", "predict")


def _weights(values: list[str]) -> dict[str, Path]:
    out = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not Path(path).is_file():
            raise SystemExit(f"--weights {value!r}: expected BUNDLE=PATH to an existing model.pt")
        out[name] = Path(path)
    return out


def remeasure(machine: Machine) -> None:
    """Measure the matmul peaks again after the run and keep the better figure (a shared machine's
    load changes during a run; the peak is the best the CPU showed at either end)."""
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("int8", torch.int8)):
        if name in machine.peaks:
            machine.peaks[name] = max(machine.peaks[name], matmul_peak(dtype))
    machine.load_after = os.getloadavg()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("name", choices=[*BENCHMARKS, "all"], help="which benchmark")
    p.add_argument("--quick", action="store_true", help="smoke run: fewer images, repeats and epochs")
    p.add_argument(
        "--write",
        action="store_true",
        help=f"replace the benchmark's section of {DOC.relative_to(DOC.parents[1])}",
    )
    p.add_argument("--threads", type=int, default=2, help="intra-op threads of every backend (default 2)")
    p.add_argument(
        "--workdir",
        type=Path,
        default=Path("runs/bench"),
        help="phantoms, weights, exports (default runs/bench)",
    )
    p.add_argument("--weights", action="append", default=[], metavar="BUNDLE=PATH",
                   help="use this model.pt for a bundle instead of a short phantom training run")  # fmt: skip
    p.add_argument("--bundles", nargs="+", help="2D bundles to benchmark (default: both)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    set_threads(args.threads)
    if args.quick:
        args.workdir = args.workdir / "quick"  # smoke runs never replace the cached full-size weights
    command = "python -m bench " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    command = command.replace(" --write", "")
    names = BENCHMARKS if args.name == "all" else (args.name,)
    for name in names:
        if name == "infer2d":
            from bench import infer2d

            settings = infer2d.Settings(
                threads=args.threads, quick=args.quick, weights=_weights(args.weights), workdir=args.workdir
            )
            if args.bundles:
                settings.bundles = tuple(args.bundles)
            machine = describe(args.threads, peaks=("fp32", "bf16", "int8"))
            results = [infer2d.run_bundle(b, settings, machine) for b in settings.bundles]
            remeasure(machine)
            section = infer2d.render(machine, results, command)
        elif name == "infer3d":
            from bench import infer3d

            machine = describe(args.threads, peaks=("fp32", "bf16", "int8"))
            settings3d = infer3d.Settings(
                args.threads, args.quick, args.workdir, _weights(args.weights).get(infer3d.BUNDLE)
            )
            out3d = infer3d.run(settings3d)
            remeasure(machine)
            section = infer3d.render(machine, out3d, command)
        elif name == "predict":
            from bench import predict

            machine = describe(args.threads, peaks=("fp32",))
            out_predict = predict.run(predict.Settings(args.threads, args.quick, args.workdir))
            remeasure(machine)
            section = predict.render(machine, out_predict, command)
        else:
            from bench import train

            machine = describe(args.threads)
            out_train = train.run(train.Settings(args.threads, args.quick, args.workdir))
            machine.load_after = os.getloadavg()
            section = train.render(machine, out_train, command)
        print(section, flush=True)
        if args.write:
            print(f"(written to {write_section(name, section)})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
