"""Predict masks with a bundle's inference.json: aligned masks, DICOM SEG, per-case JSON and a CSV."""

from __future__ import annotations

import argparse
import sys

from sum_monai.cli._common import add_bundle_arg, parse_overrides, print_table

EPILOG = """\
inputs (--input FILE or DIR):
  2D bundles   .png .jpg .dcm files (or DICOM without suffix); a folder: every such file below it,
               except *_mask.png / *_mask_N.png
  MRI bundle   a 4D NIfTI/NRRD (X, Y, Z, 2); <case>_0000.nii.gz + <case>_0001.nii.gz side by side;
               a case folder with DICOM series folders pre/ and post1/; or a folder of those

outputs (--output DIR), named after the input:
  <name>_seg.png / <name>_seg.nii.gz   mask on the input's grid (PNG at the input size, NIfTI with
                                       the input's affine)
  <name>_seg.dcm                       DICOM SEG for DICOM inputs (references the source images;
                                       mammography: normal tissue, benign, malignant segments)
  <name>.json                          lesion count, area mm^2 / volume mm^3, class, probabilities
  predictions.csv                      one row per case (failed cases with their problem)

exit status: 0 all cases predicted, 1 some failed (listed), 2 usage, bundle or weights error.

examples:
  sum-monai predict --bundle breast_us_seg_2d --weights run/models/model.pt --input busi/ --output preds/
  sum-monai predict --bundle mammo_seg_2d --input scans/L_CC.dcm --output preds/ --backend onnx
  sum-monai predict --bundle breast_mri_seg_3d --input mri/dicom/ --output preds/ --device cuda

Bundle configs run code: predict only with bundles you trust (docs/trust.md).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict", help="predict masks (PNG/NIfTI, DICOM SEG, JSON, CSV) for files or folders",
        description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    add_bundle_arg(p)
    p.add_argument(
        "--input",
        required=True,
        metavar="FILE|DIR",
        help="image file, DICOM series / case folder, or folder of them",
    )
    p.add_argument(
        "--output",
        required=True,
        metavar="DIR",
        help="output folder (created; existing outputs of the same cases are replaced)",
    )
    p.add_argument("--weights", help="checkpoint (state dict) to use; default: the bundle's models/model.pt")
    p.add_argument(
        "--backend", default="torch", choices=["torch", "torchscript", "onnx", "openvino"],
        help="torch (eager, default), torchscript (ckpt_export), onnx (onnx_export, run by ONNX Runtime on the CPU) "
        "or openvino (the ONNX export compiled by OpenVINO's CPU plugin; --precision bf16 where the CPU has it); "
        "an ensemble's fold models all run in the backend",
    )  # fmt: skip
    p.add_argument(
        "--model",
        help="an exported model.ts / .onnx for --backend torchscript/onnx/openvino (default: export --weights)",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N")
    p.add_argument(
        "--pixel-spacing", type=float, nargs="+", metavar="MM",
        help="pixel size of PNG/JPEG inputs in mm (one value, or column and row spacing); they carry none",
    )  # fmt: skip
    p.add_argument(
        "--config", dest="config_files", action="append", default=[], metavar="FILE",
        help="JSON file of inference.json overrides (ad hoc; a training run's bundle, RUN/bundle/<name>, holds its "
        "recipe and needs none)",
    )  # fmt: skip
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a bundle config value, e.g. --set image_size=128 (repeatable)",
    )  # fmt: skip
    p.add_argument(
        "--precision", choices=("auto", "fp32", "bf16", "fp16", "int8"), default=None,
        help="torch and openvino backends (default: the bundle's precision config value, auto): auto (fp32 on CPUs, "
        "bf16/fp16 autocast on GPUs), fp32, bf16 (the fast path on CPUs "
        "with AVX512-BF16 or AMX; elsewhere it falls back to fp32 and the log says so), fp16 (GPUs), int8 (--backend "
        "openvino, 2D bundles: NNCF quantisation calibrated on --calibration's training images, refused unless its "
        "masks agree with fp32 at Dice >= 0.995 on its validation images)",
    )  # fmt: skip
    p.add_argument(
        "--calibration", metavar="DATALIST",
        help="with --precision int8: a datalist JSON (training split: calibration images; validation split: the "
        "agreement check with fp32)",
    )  # fmt: skip
    p.add_argument(
        "--batch-size", type=int, default=None, metavar="N",
        help="cases of one preprocessed shape run through the network together (default 8 for 2D bundles, 1 for 3D)",
    )  # fmt: skip
    p.add_argument(
        "--workers", type=int, default=0, metavar="N",
        help="preprocessing processes (default 0: one background thread, best on a machine of few cores)",
    )  # fmt: skip
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument(
        "--overlays", action="store_true",
        help="also draw overlays.png: the predicted 2D cases with their mask outlines (up to 16)",
    )  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from sum_monai.errors import ConfigError
    from sum_monai.predict.runner import predict

    # library chatter (highdicom module copies, ONNX graph passes) would hide the progress bar
    if not getattr(args, "verbose", False):
        for name in ("highdicom", "onnx_ir", "onnxscript"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if args.calibration and args.precision != "int8":
        raise ConfigError("--calibration is for --precision int8 (it calibrates and checks the INT8 model)")
    if args.model and args.backend == "torch":
        raise ConfigError("--model is for --backend torchscript, onnx or openvino (the torch backend uses --weights)")
    if (args.batch_size is not None and args.batch_size < 1) or args.workers < 0:
        raise ConfigError("--batch-size takes a positive number of cases and --workers zero or more processes")
    if args.pixel_spacing is not None and (len(args.pixel_spacing) > 2 or min(args.pixel_spacing) <= 0):
        raise ConfigError("--pixel-spacing takes one or two positive values in mm")
    report = predict(
        args.bundle, args.input, args.output, weights=args.weights, backend=args.backend, model_file=args.model,
        device=args.device, overrides=parse_overrides(args.overrides, args.config_files),
        pixel_spacing=tuple(args.pixel_spacing) if args.pixel_spacing else None, progress=args.progress,
        batch_size=args.batch_size, workers=args.workers, precision=args.precision, calibration=args.calibration,
    )  # fmt: skip
    ok = len(report.records) - len(report.failed)
    if args.overlays:
        from sum_monai.bundle.locate import Bundle
        from sum_monai.predict.overview import write_prediction_overlays

        picture = write_prediction_overlays(Bundle.find(args.bundle), report.records, report.output_dir)
        if picture is not None:
            print(f"overlays {picture}")
    print_table(
        [
            (
                "cases",
                f"{ok} predicted, {len(report.failed)} failed, {report.seconds:.1f} s ({report.backend})",
            ),
            ("outputs", str(report.output_dir)),
            ("table", str(report.csv)),
        ]
    )
    if report.failed:
        print(f"\n{len(report.failed)} case(s) failed:", file=sys.stderr)
        for record in report.failed:
            print(f"  - {record['error']}", file=sys.stderr)
    return report.exit_status
