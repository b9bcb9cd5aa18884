"""2D inference benchmark: images/s of each 2D bundle per CPU backend, as a fraction of the matmul peak.

For every 2D bundle: the network of its ``inference.json`` with weights that segment (``--weights``
or a short phantom run of its own trainer), a batch of 8 preprocessed 256x256 images, each backend
timed on that batch (best and median of several repeats), its FLOPs counted with torch's
``FlopCounterMode``, and its masks on held-out phantom images compared with eager PyTorch (Dice).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bench import backends as bk
from bench.flops import count_flops
from bench.machine import Machine
from bench.models import MODALITY, datalist_items, network, phantoms, preprocess, trained_weights
from bench.report import fmt, table
from bench.timing import time_round_robin
from sum_monai.bundle.export import export_onnx, export_torchscript
from sum_monai.bundle.locate import Bundle

logger = logging.getLogger(__name__)

BUNDLES = ("breast_us_seg_2d", "mammo_seg_2d")
IMAGE_SIZE = 256
#: Short phantom training per bundle: (cases, epochs), and held-out evaluation cases. Mammography
#: counts patients (2-4 images each) and its BasicUNet costs ~17x the ultrasound UNet per image.
#: The ultrasound UNet (32-512 channels, dropout) needs more iterations and the demo's learning rate.
TRAINING: dict[str, tuple[int, int, dict]] = {
    "breast_us_seg_2d": (96, 20, {"learning_rate": 0.003}),
    "mammo_seg_2d": (8, 10, {}),
}
EVAL_CASES = {"breast_us_seg_2d": 32, "mammo_seg_2d": 6}
BATCH = 8
MATMUL = "fp32 matmul 4096"
#: Targets from the issue.
TARGET_PEAK_FRACTION = 0.50
TARGET_DICE_AGREEMENT = 0.995


@dataclass
class Settings:
    """What a 2D run uses; ``quick`` shrinks everything for a smoke run."""

    threads: int = 2
    quick: bool = False
    weights: dict[str, Path] = field(default_factory=dict)
    workdir: Path = Path("runs/bench")
    bundles: tuple[str, ...] = BUNDLES

    def repeats(self, bundle: str) -> int:
        """Timed repeats per backend (fewer for the heavy mammography network)."""
        return 3 if self.quick else (9 if bundle == "breast_us_seg_2d" else 5)

    def eval_cases(self, bundle: str) -> int:
        """Held-out phantom cases for the Dice comparison."""
        return 3 if self.quick else EVAL_CASES[bundle]

    def training(self, bundle: str) -> tuple[int, int, dict]:
        """(phantom cases, epochs, overrides) of the short training run that makes the weights."""
        return (4, 2, {}) if self.quick else TRAINING[bundle]


@dataclass
class Row:
    """One backend's figures."""

    backend: str
    seconds_best: float | None = None
    seconds_median: float | None = None
    dice_vs_eager: float | None = None
    dice_vs_truth: float | None = None
    max_prob_diff: float | None = None
    note: str = ""


def mean_dice(pred: np.ndarray, ref: np.ndarray, n_classes: int) -> float:
    """Mean over images of the mean Dice of the foreground classes of label maps ``pred`` vs ``ref``.

    MONAI's ``compute_dice`` with ``ignore_empty=False``: a class absent from both counts as 1.
    """
    from monai.metrics import compute_dice
    from monai.networks.utils import one_hot

    p = one_hot(torch.from_numpy(pred)[:, None], n_classes, dim=1)
    r = one_hot(torch.from_numpy(ref)[:, None], n_classes, dim=1)
    return float(compute_dice(p, r, include_background=False, ignore_empty=False).mean())


def predict(run: bk.Run, images: np.ndarray) -> np.ndarray:
    """Label maps (argmax of the logits) of ``images``, in batches of :data:`BATCH`."""
    return probabilities(run, images).argmax(1).astype(np.int64)


def probabilities(run: bk.Run, images: np.ndarray) -> np.ndarray:
    """Softmax class probabilities of ``images``, in batches of :data:`BATCH`."""
    logits = np.concatenate([run(images[i : i + BATCH]) for i in range(0, len(images), BATCH)])
    return torch.softmax(torch.from_numpy(logits), dim=1).numpy()


def builders(
    net: torch.nn.Module, ts: Path, onnx: Path, threads: int, shape: list[int], calib: list[np.ndarray]
) -> list[tuple[str, Callable[[], bk.Backend]]]:
    """Every backend to try, eager PyTorch first (the reference), as ``(label, build)`` pairs."""
    from sum_monai.utils.precision import cpu_bf16_native

    bf16 = [("eager PyTorch bf16 (predict --precision bf16)", lambda: bk.eager_bf16(net))] if cpu_bf16_native() else []
    return [
        ("eager PyTorch", lambda: bk.eager(net)),
        ("eager PyTorch (channels_last)", lambda: bk.eager(net, channels_last=True)),
        *bf16,
        ("TorchScript", lambda: bk.torchscript(ts)),
        ("TorchScript (optimised)", lambda: bk.torchscript(ts, optimize=True)),
        *[
            (f"ONNX Runtime ({lv})", lambda lv=lv: bk.onnxruntime(onnx, threads, lv))
            for lv in ("basic", "extended", "all")
        ],
        ("OpenVINO FP32", lambda: bk.openvino(onnx, threads, shape, "f32")),
        ("OpenVINO BF16", lambda: bk.openvino(onnx, threads, shape, "bf16")),
        ("OpenVINO INT8", lambda: bk.openvino_int8(onnx, threads, shape, calib)),
        ("OpenVINO INT8 (rest BF16)", lambda: bk.openvino_int8(onnx, threads, shape, calib, rest="bf16")),
        ("ONNX Runtime INT8", lambda: bk.onnxruntime_int8(onnx, threads, calib, onnx.parent / "ort_int8")),
    ]


def run_bundle(name: str, s: Settings, machine: Machine) -> tuple[dict, list[Row]]:
    """Benchmark every backend on one 2D bundle; returns a summary and one row per backend.

    The fp32 matmul is timed in the same rounds as the backends and ``machine.peaks["fp32"]``
    keeps the best figure seen.
    """
    bundle = Bundle.find(name)
    work = s.workdir / name
    n_train, epochs, extra = s.training(name)
    ckpt = s.weights.get(name) or trained_weights(
        bundle, s.workdir, epochs, n_train, {"image_size": IMAGE_SIZE, **extra}
    )
    modality = MODALITY[name]
    evald = phantoms(modality, s.eval_cases(name), work / "phantoms_eval", seed=1)
    items = datalist_items(evald, work / "eval_datalist")
    items = items[: len(items) // BATCH * BATCH] or items
    images, labels = preprocess(bundle, items, IMAGE_SIZE)
    calib_items = datalist_items(
        phantoms(modality, n_train, work / "phantoms_train", seed=0), work / "calib_datalist"
    )[:16]
    calib, _ = preprocess(bundle, calib_items, IMAGE_SIZE)
    calib_batches = [calib[i : i + BATCH] for i in range(0, len(calib), BATCH)]

    net = network(bundle, ckpt)
    with torch.no_grad():
        n_classes = int(net(torch.from_numpy(images[:1])).shape[1])
    flops = count_flops(net, torch.from_numpy(images[:BATCH])) / len(images[:BATCH])
    ts = export_torchscript(bundle, ckpt, work / "export" / "model.ts")
    onnx = export_onnx(bundle, ckpt, work / "export" / "model.onnx", input_shape=[BATCH, *images.shape[1:]])

    batch = np.ascontiguousarray(images[:BATCH])
    rows: list[Row] = []
    built: dict[str, bk.Backend] = {}
    eager_probs: np.ndarray | None = None
    for label, build in builders(net, ts, onnx, s.threads, [BATCH, *images.shape[1:]], calib_batches):
        try:
            backend = build()
            probs = probabilities(backend.run, images)
        except Exception as err:  # a backend that cannot load or run is a result, not a crash
            rows.append(Row(label, note=f"failed: {type(err).__name__}: {err}"[:160]))
            logger.warning("backend %s failed: %s", label, err)
            continue
        if eager_probs is None:
            eager_probs = probs
        masks, eager_masks = probs.argmax(1), eager_probs.argmax(1)
        row = Row(backend.name, note=backend.note)
        row.dice_vs_eager = mean_dice(masks, eager_masks, n_classes)
        row.max_prob_diff = float(np.abs(probs - eager_probs).max())
        if labels is not None:
            row.dice_vs_truth = mean_dice(masks, labels, n_classes)
        rows.append(row)
        built[backend.name] = backend
    # all backends and the fp32 matmul in turns: a load change on the shared machine hits all alike
    calls = {name: (lambda b=b: b.run(batch)) for name, b in built.items()}
    a, b2 = torch.randn(4096, 4096), torch.randn(4096, 4096)
    calls[MATMUL] = lambda: torch.matmul(a, b2)
    timings = time_round_robin(calls, warmup=2, repeats=s.repeats(name))
    for row in rows:
        if row.backend in timings:
            row.seconds_best, row.seconds_median = timings[row.backend].best, timings[row.backend].median
            logger.info("%s %s: %.1f img/s (best)", name, row.backend, BATCH / row.seconds_best)
    peak = 2.0 * 4096**3 / timings[MATMUL].best / 1e9
    machine.peaks["fp32"] = max(machine.peaks.get("fp32", 0.0), peak)
    summary = {
        "bundle": name, "gflop_per_image": flops / 1e9, "weights": str(ckpt), "eval_images": len(images),
        "classes": n_classes, "trained_here": name not in s.weights,
    }  # fmt: skip
    return summary, rows


def render(machine: Machine, results: list[tuple[dict, list[Row]]], command: str) -> str:
    """Markdown section of the 2D benchmark with the verdict against the targets."""
    peak = machine.peaks["fp32"]
    out = ["## 2D inference (256x256, batch 8)", "", f"Command: `{command}`", "", machine.header(), ""]
    for summary, rows in results:
        g = summary["gflop_per_image"]
        weights = (
            "trained here on phantoms (bundle trainer, short run)"
            if summary["trained_here"]
            else summary["weights"]
        )
        out += [
            f"### {summary['bundle']}",
            "",
            f"{g:.2f} GFLOP per image (FlopCounterMode); {summary['eval_images']} held-out phantom images for "
            f"Dice; weights: {weights}.",
            "",
        ]
        body = []
        for r in rows:
            if r.seconds_best is None:
                body.append([r.backend, "-", "-", "-", "-", "-", "-", "-", r.note])
                continue
            ips_best, ips_med = BATCH / r.seconds_best, BATCH / r.seconds_median
            frac = g * ips_best / peak
            body.append([
                r.backend, fmt(ips_med), fmt(ips_best), fmt(g * ips_best, 0), f"{100 * frac:.0f} %",
                fmt(r.dice_vs_eager, 4), fmt(r.max_prob_diff, 4), fmt(r.dice_vs_truth, 4), r.note,
            ])  # fmt: skip
        out.append(table(
            ["backend", "img/s (median)", "img/s (best)", "GFLOP/s (best)", "of fp32 matmul peak", "Dice vs eager", "max abs dp vs eager",
             "Dice vs truth", "note"],
            body,
        ))  # fmt: skip
        out += ["", verdict(summary, rows, peak), ""]
    return "\n".join(out)


def verdict(summary: dict, rows: list[Row], peak: float) -> str:
    """Plain sentence: the best backend that keeps Dice within the target, and whether 50 % was met."""
    g = summary["gflop_per_image"]
    timed = [r for r in rows if r.seconds_best is not None]
    if not timed:
        return "**Target not measured**: no backend ran."
    eager = timed[0]
    ok = [r for r in timed if r.dice_vs_eager is not None and r.dice_vs_eager >= TARGET_DICE_AGREEMENT]
    best = min(ok, key=lambda r: r.seconds_best) if ok else None
    eager_frac = g * BATCH / eager.seconds_best / peak
    if best is None:
        return f"**Target not met**: no backend kept Dice vs eager >= {TARGET_DICE_AGREEMENT}."
    frac = g * BATCH / best.seconds_best / peak
    met = "met" if frac >= TARGET_PEAK_FRACTION else "not met"
    caveat = ""
    if eager.dice_vs_truth is not None and eager.dice_vs_truth < 0.5:
        caveat = (
            f" Caveat: these weights segment poorly (eager Dice vs truth {eager.dice_vs_truth:.2f}), so the "
            "mask agreement says less than it would with a trained model; see also max abs dp."
        )
    return (
        f"**Target (>= 50 % of the fp32 matmul peak, Dice vs eager >= {TARGET_DICE_AGREEMENT}): {met}** with "
        f"{best.backend}: {100 * frac:.0f} % ({BATCH / best.seconds_best:.1f} img/s, Dice vs eager "
        f"{best.dice_vs_eager:.4f}); eager PyTorch: {100 * eager_frac:.0f} % ({BATCH / eager.seconds_best:.1f} img/s).{caveat}"
    )
