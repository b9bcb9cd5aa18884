"""Export a bundle's network with checked weights to TorchScript or ONNX, and compare it with eager."""

from __future__ import annotations

import argparse

from sum_monai.cli._common import add_bundle_arg, parse_overrides, print_table

EPILOG = """\
The weights are checked first (tensors only, loaded with torch.load(weights_only=True); keys and
shapes must fit the bundle's network_def), then exported with MONAI's ckpt_export (TorchScript, the
bundle's configs and metadata embedded) or onnx_export (dynamic batch and spatial axes). The export
is reloaded and run on a random input beside the eager network; the largest difference is printed.

examples:
  sum-monai export --bundle breast_us_seg_2d --weights run/models/model.pt --format torchscript --out model.ts
  sum-monai export --bundle breast_mri_seg_3d --format onnx --out model.onnx
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="export checked weights to TorchScript or ONNX",
        description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    add_bundle_arg(p)
    p.add_argument("--weights", help="checkpoint (state dict); default: the bundle's models/model.pt")
    p.add_argument("--format", required=True, choices=["torchscript", "onnx"], help="export format")
    p.add_argument("--out", required=True, metavar="FILE", help="file to write (model.ts / model.onnx)")
    p.add_argument(
        "--config", dest="config_files", action="append", default=[], metavar="FILE",
        help="JSON file of inference.json overrides for weights of a bundle you did not train with sum-monai; "
        "a training run's bundle (RUN/bundle/<name>) holds its recipe and needs none",
    )  # fmt: skip
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a bundle config value, e.g. --set 'network_def#channels=[16,32,64,128,256]' (repeatable)",
    )  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from sum_monai.bundle.locate import Bundle
    from sum_monai.predict.exports import export_checked

    if not getattr(args, "verbose", False):  # the ONNX exporter logs every graph pass at INFO
        for name in ("onnx_ir", "onnxscript"):
            logging.getLogger(name).setLevel(logging.WARNING)

    bundle = Bundle.find(args.bundle)
    overrides = parse_overrides(args.overrides, args.config_files)
    result = export_checked(bundle, args.format, args.out, args.weights, overrides)
    print_table(
        [
            ("export", str(result.path)),
            ("weights", f"{result.weights} (sha256 {result.weights_sha256[:12]})"),
            ("checked on", "x".join(str(s) for s in result.input_shape)),
            ("max |export - eager|", f"{result.max_abs_diff:.2e}"),
        ]
    )
    return 0
