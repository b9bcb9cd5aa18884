"""End-to-end prediction benchmark: what ``sum-monai predict`` gives a user, against the network alone.

In one run, on the same images and the same CPU threads:

- **start-up**: wall time of ``sum-monai predict --help`` and of a one-image prediction, each a
  fresh process (what a user waits for);
- **network only**: the bundle's ``inferer`` (for the shipped ultrasound bundle the 5-fold
  ensemble with its mirror pass: 10 network passes per image) on batches of preprocessed images,
  and the single network, fp32 eager;
- **end to end**: :func:`sum_monai.predict.runner.predict` on the folder (reading, preprocessing,
  inference, postprocessing, PNG / JSON / CSV writing), batched (the default), one case at a
  time, and with ``--backend openvino``; images/s and the ratio to the network-only rate of the
  same inferer (eager PyTorch);
- **bf16 agreement**: the inferer's masks in bf16 autocast vs fp32 on the same images (lesion
  Dice per image), and the speed ratio;
- **3D at scanner size** (not with ``--quick``): one 2-channel DCE study phantom of 448x448x160
  voxels (0.76 x 0.76 x 1.1 mm, a common 1.5 T protocol) as DICOM series, through ``predict``.

The images are BUSI lesion images from ``../shared/data/busi`` (or ``--input``); without them the
ultrasound phantoms.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.machine import Machine
from bench.report import fmt, table
from sum_monai.utils.precision import cpu_bf16_native

logger = logging.getLogger(__name__)

BUNDLE = "breast_us_seg_2d"
MRI_BUNDLE = "breast_mri_seg_3d"
BUSI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "busi"
#: DCE geometry of a common 1.5 T protocol: voxels and mm.
MRI_SIZE, MRI_SPACING = (448, 448, 160), (0.76, 0.76, 1.1)
TARGET_RATIO = 0.5
#: Printed under the table: how to read it.
EXPLAINED = """\
How to read it: the shipped ultrasound bundle runs 10 network passes per image (5 fold models x
the image and its mirror), so its inferer alone is about a tenth of the single network's rate;
`predict` end to end is compared with that inferer, which is what it runs. Before batching and
pipelining (one case at a time, a `MetaTensor` through the network, the mirror as a second call)
the same 64 images took 112 s under a profiler on a loaded machine. Of the one-image start-up,
`import monai` is most (about 10 s: MONAI imports all its submodules), then the config parse and
the five fold models. The OpenVINO end-to-end row reuses the five fold models' ONNX exports that
its network-only row made (exports are cached by weights, config and library versions; a first
run pays about 10 s per model). The in-process 3D rows run after one warm-up prediction of the
same study (MONAI, ITK and the bundle loaded); the fresh-process row is what a user waits for one
study, start-up included.
bf16 agreement is measured whatever the CPU (emulated bf16 rounds the same way); `--precision
bf16` runs bf16 only on CPUs with AVX512-BF16 or AMX, and falls back to fp32 elsewhere; the
bf16 end-to-end and 3D rows appear only where it is native."""


@dataclass
class Settings:
    """What a run uses; ``quick`` shrinks it to a smoke run."""

    threads: int = 2
    quick: bool = False
    workdir: Path = Path("runs/bench")
    images: int = 64
    input: Path | None = None

    @property
    def n(self) -> int:
        return 6 if self.quick else self.images


@dataclass
class Result:
    """The figures of one run."""

    source: str = ""
    n: int = 0
    help_s: float | None = None
    cli_s: float | None = None
    one_image_s: float | None = None
    network_rate: float | None = None
    single_rate: float | None = None
    passes: int = 1
    openvino_rates: tuple[float, float] | None = None
    e2e: dict[str, float] = field(default_factory=dict)
    mri: dict[str, Any] = field(default_factory=dict)
    bf16: dict[str, float] = field(default_factory=dict)


def _images(settings: Settings, folder: Path) -> str:
    """Fill ``folder`` with the benchmark's images (links); say where they come from."""
    from sum_monai.phantoms import generate

    folder.mkdir(parents=True, exist_ok=True)
    source = settings.input or BUSI
    found = sorted(p for p in source.rglob("*.png") if "_mask" not in p.name and "normal" not in p.name)
    if found:
        for i, path in enumerate(found[: settings.n]):
            os.symlink(path.resolve(), folder / f"{i:03d}.png")
        return f"{min(len(found), settings.n)} BUSI lesion images from {source}"
    generate("us", settings.n, folder / "phantoms", seed=0, progress=False, overview=False)
    return f"{settings.n} ultrasound phantoms (no BUSI folder at {source})"


def _wall(cmd: list[str]) -> float:
    """Wall seconds of a fresh process running ``cmd`` (it must succeed)."""
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _batches(predictor: Any, folder: Path) -> list[torch.Tensor]:
    """The folder's images through the bundle's preprocessing, as plain batches of 8."""
    from sum_monai.predict.cases import find_cases

    images = [predictor.prepare(c).data["image"].as_tensor() for c in find_cases(folder, 2, 1)]
    return [torch.stack(images[i : i + 8]) for i in range(0, len(images), 8)]


def _network_rates(folder: Path, work: Path, backend: str = "torch") -> tuple[float, float, int]:
    """Images/s of the bundle's inferer and of its single network on the folder's images (batches of 8).

    With ``backend="openvino"`` every member runs in OpenVINO (exports made before the clock starts).
    """
    from sum_monai.bundle.locate import Bundle
    from sum_monai.predict.runner import Predictor

    with Predictor(Bundle.find(BUNDLE), work, backend=backend) as predictor:
        x = _batches(predictor, folder)
        n = sum(len(b) for b in x)
        passes = (len(predictor.inferer.weights) + 1) * (1 + len(predictor.inferer.inferer.spatial_axes))
        with torch.inference_mode():
            predictor.inferer(x[0], predictor.network)  # warm-up (loads, for openvino compiles, the members)
            start = time.perf_counter()
            for b in x:
                predictor.inferer(b, predictor.network)
            ensemble = n / (time.perf_counter() - start)
            start = time.perf_counter()
            for b in x:
                predictor.network(b)
            single = n / (time.perf_counter() - start)
    return ensemble, single, passes


def _bf16_agreement(folder: Path, work: Path) -> dict[str, float]:
    """Lesion Dice between the inferer's masks in bf16 autocast (+ channels-last) and in fp32, per image.

    Run whatever the CPU: where bf16 is emulated it is slow but computes the same roundings, so
    the agreement is measured on every machine (the speed only where the CPU has AVX512-BF16/AMX).
    Masks are compared on the network's grid (argmax of the ensemble's mean softmax).
    """
    from sum_monai.bundle.locate import Bundle
    from sum_monai.predict.runner import Predictor
    from sum_monai.utils.precision import resolve_precision

    with Predictor(Bundle.find(BUNDLE), work) as predictor:
        batches = _batches(predictor, folder)
        # the precision rules' own bf16 (autocast + channels-last), forced whatever this CPU has
        bf16 = dataclasses.replace(resolve_precision("fp32", "cpu"), name="bf16")
        masks, seconds = {}, {}
        with torch.inference_mode():
            for p in (resolve_precision("fp32", "cpu"), bf16):
                start = time.perf_counter()
                with p.autocast():
                    outs = [predictor.inferer(p.layout(b), predictor.network).float() for b in batches]
                seconds[p.name] = time.perf_counter() - start
                masks[p.name] = torch.cat(outs).argmax(1) > 0
    dice = [_mask_dice(a, b) for a, b in zip(masks["fp32"], masks["bf16"], strict=True)]
    return {"mean_dice": sum(dice) / len(dice), "min_dice": min(dice), "n": len(dice),
            "speed_ratio": seconds["fp32"] / seconds["bf16"]}  # fmt: skip


def _mask_dice(a: Any, b: Any) -> float:
    """Dice of two boolean masks (MONAI's ``compute_dice``; two empty masks agree: 1)."""
    from monai.metrics import compute_dice

    a, b = (torch.as_tensor(np.asarray(m)).float()[None, None] for m in (a, b))
    return float(compute_dice(b, a, include_background=True, ignore_empty=False)[0, 0])


def _end_to_end(folder: Path, out: Path, batch_size: int, backend: str = "torch", precision: str | None = None) -> float:
    """Images/s of :func:`predict` on the folder (everything it does, bundle set-up and exports included)."""
    from sum_monai.predict.runner import predict

    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    report = predict(BUNDLE, folder, out, progress=False, batch_size=batch_size, backend=backend, precision=precision)
    seconds = time.perf_counter() - start
    assert report.exit_status == 0, report.failed
    return len(report.records) / seconds


def _mri(work: Path) -> dict[str, Any]:
    """One scanner-size DCE study phantom (DICOM) through ``predict``: generation and prediction seconds."""
    import nibabel as nib

    from sum_monai.phantoms import generate
    from sum_monai.predict.runner import predict

    study = work / "mri_study"
    shutil.rmtree(study, ignore_errors=True)
    start = time.perf_counter()
    generate("mri", 1, study, seed=0, progress=False, overview=False, size=MRI_SIZE, spacing=MRI_SPACING,
             layout="study", phases=(2,))  # fmt: skip
    made = time.perf_counter() - start
    figures: dict[str, Any] = {"generate_s": made}
    masks = {}
    precisions = ["fp32", "bf16"] if cpu_bf16_native() else ["fp32"]
    predict(MRI_BUNDLE, study, work / "mri_warm_up", progress=False)  # first use: ITK, the DICOM reader, the bundle
    for precision in precisions:
        out = work / f"mri_pred_{precision}"
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        report = predict(MRI_BUNDLE, study, out, progress=False, precision=precision)
        figures[f"predict_s_{precision}"] = time.perf_counter() - start
        assert report.exit_status == 0, report.failed
        figures["shape"] = report.records[0]["spatial_shape"]
        masks[precision] = np.asarray(nib.load(next(out.glob("*_seg.nii.gz"))).dataobj) > 0
    if "bf16" in masks:
        figures["bf16_dice"] = _mask_dice(masks["fp32"], masks["bf16"])
    out = work / "mri_cli"
    shutil.rmtree(out, ignore_errors=True)
    figures["cli_s"] = _wall([sys.executable, "-m", "sum_monai", "predict", "--bundle", MRI_BUNDLE, "--input", str(study),
                              "--output", str(out), "--no-progress"])  # fmt: skip
    return figures


def run(settings: Settings) -> Result:
    """Run every measurement of the module docstring."""
    work = settings.workdir / ("predict_quick" if settings.quick else "predict")
    shutil.rmtree(work, ignore_errors=True)
    folder = work / "images"
    result = Result()
    result.source = _images(settings, folder)
    result.n = len(list(folder.rglob("*.png")))
    cli = [sys.executable, "-m", "sum_monai"]
    result.help_s = _wall([*cli, "predict", "--help"])
    one = next(iter(sorted(folder.rglob("*.png"))))
    result.one_image_s = _wall([*cli, "predict", "--bundle", BUNDLE, "--input", str(one), "--output",
                                str(work / "one"), "--no-progress"])  # fmt: skip
    result.cli_s = _wall([*cli, "predict", "--bundle", BUNDLE, "--input", str(folder), "--output",
                          str(work / "cli"), "--no-progress"])  # fmt: skip
    logger.info("network-only rates")
    result.network_rate, result.single_rate, result.passes = _network_rates(folder, work / "net")
    ov_ensemble, ov_single, _ = _network_rates(folder, work / "net_ov", "openvino")
    result.openvino_rates = (ov_ensemble, ov_single)
    for batch in (8, 1):
        logger.info("end to end, batch %d", batch)
        result.e2e[f"batch {batch}"] = _end_to_end(folder, work / f"out_b{batch}", batch)
    logger.info("end to end, OpenVINO")
    result.e2e["batch 8, --backend openvino (ONNX exports cached)"] = _end_to_end(folder, work / "out_ov", 8, "openvino")
    if cpu_bf16_native():
        logger.info("end to end, --precision bf16")
        result.e2e["batch 8, --precision bf16"] = _end_to_end(folder, work / "out_bf16", 8, precision="bf16")
    logger.info("bf16 agreement with fp32")
    result.bf16 = _bf16_agreement(folder, work / "bf16")
    if not settings.quick:
        logger.info("3D at scanner size")
        result.mri = _mri(work)
    return result


def render(machine: Machine, result: Result, command: str) -> str:
    """The markdown section of ``docs/benchmarks.md``."""
    rows = [
        ("`sum-monai predict --help` (fresh process)", f"{fmt(result.help_s)} s", ""),
        ("one-image `sum-monai predict` (fresh process)", f"{fmt(result.one_image_s)} s", "start-up + bundle set-up + 1 image"),
        (f"`sum-monai predict` of the {result.n} images (fresh process)",
         f"{fmt(result.n / result.cli_s if result.cli_s else None, 2)} img/s", f"{fmt(result.cli_s)} s wall: what a user waits"),
        (f"network only: the bundle's inferer ({result.passes} passes per image), fp32, batches of 8",
         f"{fmt(result.network_rate, 2)} img/s", "the yardstick of the ratio"),
        ("network only: one network, fp32, batches of 8", f"{fmt(result.single_rate, 1)} img/s", ""),
    ]  # fmt: skip
    if result.openvino_rates:
        ens, one = result.openvino_rates
        rows.append(("network only, OpenVINO f32 (every member): the inferer / one network", f"{fmt(ens, 2)} / {fmt(one, 1)} img/s",
                     f"{fmt(ens / result.network_rate if result.network_rate else None, 2)}x eager"))  # fmt: skip
    for name, rate in result.e2e.items():
        ratio = rate / result.network_rate if result.network_rate else None
        rows.append((f"`predict` end to end, {name}", f"{fmt(rate, 2)} img/s",
                     f"{fmt(100 * ratio if ratio else None, 0)} % of the inferer alone (target >= {TARGET_RATIO:.0%})"))  # fmt: skip
    if result.bf16:
        b = result.bf16
        from sum_monai.utils.precision import BF16_FLAGS

        native = "native" if BF16_FLAGS & set(machine.flags) else "emulated: no AVX512-BF16/AMX"
        rows.append((f"bf16 autocast + channels-last vs fp32, the bundle's inferer ({native})",
                     f"lesion Dice {b['mean_dice']:.4f} (min {b['min_dice']:.4f}, {b['n']} images)",
                     f"speed {b['speed_ratio']:.2f}x fp32; --precision bf16 is used only where native"))  # fmt: skip
    if result.mri:
        m = result.mri
        study = f"3D: one 2-channel DCE study {'x'.join(map(str, MRI_SIZE))} (DICOM)"
        rows.append((f"{study} through `predict`, fp32, in this process after one warm-up", f"{fmt(m['predict_s_fp32'])} s",
                     f"phantom generated in {fmt(m['generate_s'])} s; mask {m['shape']}"))  # fmt: skip
        if "predict_s_bf16" in m:
            rows.append((f"{study} through `predict --precision bf16`, in this process", f"{fmt(m['predict_s_bf16'])} s",
                         f"mask Dice vs fp32 {m['bf16_dice']:.4f} (phantom weights)"))  # fmt: skip
        rows.append((f"{study}: `sum-monai predict` in a fresh process (the bundle's precision: auto, fp32 on CPUs)", f"{fmt(m['cli_s'])} s",
                     "start-up, imports and the study"))  # fmt: skip
    return "\n".join([
        "## End-to-end prediction",
        "",
        f"Command: `{command}`; images: {result.source}.",
        "",
        machine.header(),
        "",
        table(["what", "figure", "note"], rows),
        "",
        EXPLAINED,
    ])  # fmt: skip
