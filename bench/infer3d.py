"""3D inference benchmark: seconds per 2-channel 256x256x128 volume with the MRI bundle's sliding window.

The network and the ``SlidingWindowInferer`` (roi_size, sw_batch_size, overlap, mode) are the
ones of ``breast_mri_seg_3d/configs/inference.json``; each backend is plugged in as the
inferer's network callable. The volume is an MRI phantom generated directly at 256x256x128
voxels of 1x1x2 mm (the bundle's ``pixdim``) and passed through the bundle's preprocessing, so
no resampling distorts it. Weights: ``--weights breast_mri_seg_3d=PATH`` or a short run of the
bundle's own trainer on small phantoms, so that the masks compared between backends are real.
A sweep of inferer settings shows what would change the time, without touching the bundle.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bench import backends as bk
from bench.flops import count_flops
from bench.infer2d import mean_dice
from bench.machine import Machine
from bench.models import network, phantoms, trained_weights
from bench.report import fmt, table
from sum_monai.bundle.export import export_onnx, export_torchscript
from sum_monai.bundle.locate import Bundle
from sum_monai.bundle.run import create_workflow

logger = logging.getLogger(__name__)

BUNDLE = "breast_mri_seg_3d"
VOLUME = (256, 256, 128)
TARGET_SECONDS = 20.0


@dataclass
class Settings:
    """What a 3D run uses; ``quick`` skips the sweep and repeats once."""

    threads: int = 2
    quick: bool = False
    workdir: Path = Path("runs/bench")
    weights: Path | None = None

    @property
    def repeats(self) -> int:
        return 1 if self.quick else 3


@dataclass
class InfererConfig:
    """Sliding-window settings (those of the bundle, or a variant of the sweep)."""

    roi_size: tuple[int, ...]
    sw_batch_size: int
    overlap: float
    mode: str

    def label(self) -> str:
        roi = "x".join(str(r) for r in self.roi_size)
        return f"roi {roi}, sw_batch {self.sw_batch_size}, overlap {self.overlap:g}"

    def windows(self, shape: tuple[int, ...] = VOLUME) -> int:
        """Number of windows MONAI places on ``shape`` (``dense_patch_slices`` of its inferer)."""
        from monai.data.utils import dense_patch_slices
        from monai.inferers.utils import _get_scan_interval
        from monai.utils import ensure_tuple_rep

        interval = _get_scan_interval(
            shape, self.roi_size, len(shape), ensure_tuple_rep(self.overlap, len(shape))
        )
        return len(dense_patch_slices(shape, self.roi_size, interval))


@dataclass
class Result:
    """Figures of one backend with one inferer setting."""

    backend: str
    config: InfererConfig
    seconds: list[float] = field(default_factory=list)
    network_seconds: float | None = None
    dice_vs_eager: float | None = None
    dice_vs_truth: float | None = None
    note: str = ""


def bundle_inferer(bundle: Bundle) -> InfererConfig:
    """The sliding-window settings of the bundle's ``inference.json``."""
    inferer = create_workflow(bundle, "inference").parser.get_parsed_content("inferer")
    return InfererConfig(
        tuple(int(r) for r in inferer.roi_size),
        int(inferer.sw_batch_size),
        float(inferer.overlap),
        str(inferer.mode),
    )


def volume(bundle: Bundle, workdir: Path) -> tuple[np.ndarray, np.ndarray]:
    """A 2-channel 256x256x128 phantom volume and its label, through the bundle's preprocessing."""
    from monai.transforms import ResizeWithPadOrCrop

    folder = phantoms(
        "mri",
        1,
        workdir / BUNDLE / "phantoms_eval",
        seed=1,
        size=VOLUME,
        spacing=(1.0, 1.0, 2.0),
        format="nifti",
    )
    # one case in the Decathlon layout: imagesTr/<case>_0000 (pre), _0001 (post), labelsTr/<case>
    label_path = sorted((folder / "labelsTr").glob("*.nii.gz"))[0]
    case = label_path.name[: -len(".nii.gz")]
    item = {"image": [str(folder / "imagesTr" / f"{case}_000{c}.nii.gz") for c in (0, 1)], "label": str(label_path)}
    pre = create_workflow(bundle, "inference").parser.get_parsed_content("preprocessing")
    image = pre({"image": item["image"]})["image"]
    # the label on the same grid: nearest-neighbour through the same orientation / spacing
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Orientationd, Spacingd

    lab = Compose([
        LoadImaged("label", reader="ITKReader", image_only=True), EnsureChannelFirstd("label"),
        Orientationd("label", axcodes="RAS"), Spacingd("label", pixdim=(1.0, 1.0, 2.0), mode="nearest"),
    ])({"label": item["label"]})["label"]  # fmt: skip
    fit = ResizeWithPadOrCrop(VOLUME)  # guards against an off-by-one voxel from Spacing
    return np.asarray(fit(image), dtype=np.float32)[None], np.asarray(fit(lab))[0].astype(np.int64)


def run_inferer(
    backend: bk.Backend, cfg: InfererConfig, image: torch.Tensor
) -> tuple[float, float, np.ndarray]:
    """Sliding-window inference of ``image``: (wall s, s inside the network, label map)."""
    from monai.inferers import SlidingWindowInferer

    inferer = SlidingWindowInferer(
        roi_size=cfg.roi_size, sw_batch_size=cfg.sw_batch_size, overlap=cfg.overlap, mode=cfg.mode
    )
    call = backend.torch_callable()
    spent = [0.0]

    def timed(x: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        out = call(x)
        spent[0] += time.perf_counter() - start
        return out

    start = time.perf_counter()
    with torch.inference_mode():
        pred = inferer(image, timed)
    wall = time.perf_counter() - start
    return wall, spent[0], pred.argmax(1)[0].numpy().astype(np.int64)


def build(
    name: str,
    net: torch.nn.Module,
    ts: Path,
    onnx: Path,
    threads: int,
    shape: list[int],
    calib: list[np.ndarray],
) -> bk.Backend:
    """A backend by its table name."""
    if name == "eager PyTorch":
        return bk.eager(net)
    if name == "TorchScript":
        return bk.torchscript(ts)
    if name == "ONNX Runtime (all)":
        return bk.onnxruntime(onnx, threads, "all")
    if name == "OpenVINO FP32":
        return bk.openvino(onnx, threads, shape, "f32")
    if name == "OpenVINO BF16":
        return bk.openvino(onnx, threads, shape, "bf16")
    if name == "OpenVINO INT8":
        return bk.openvino_int8(onnx, threads, shape, calib)
    raise ValueError(name)


BACKENDS = (
    "eager PyTorch",
    "TorchScript",
    "ONNX Runtime (all)",
    "OpenVINO FP32",
    "OpenVINO BF16",
    "OpenVINO INT8",
)


def sweep_configs(base: InfererConfig) -> list[InfererConfig]:
    """Inferer variants that change the amount of work (fewer / larger windows, bigger batches)."""
    roi = base.roi_size
    big = (128, 128, 64)
    return [
        InfererConfig(roi, base.sw_batch_size, 0.0, base.mode),
        InfererConfig(roi, 16, base.overlap, base.mode),
        InfererConfig(big, 2, base.overlap, base.mode),
        InfererConfig(big, 2, 0.0, base.mode),
    ]


def _calibration(image: np.ndarray, cfg: InfererConfig, n: int = 4) -> list[np.ndarray]:
    """``n`` batches of windows cut from the volume at seeded positions (INT8 calibration)."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        crops = []
        for _ in range(cfg.sw_batch_size):
            lo = [int(rng.integers(0, s - r + 1)) for s, r in zip(image.shape[2:], cfg.roi_size, strict=True)]
            sl = tuple(slice(a, a + r) for a, r in zip(lo, cfg.roi_size, strict=True))
            crops.append(image[0][(slice(None), *sl)])
        out.append(np.stack(crops))
    return out


def measure(
    label: str,
    net: torch.nn.Module,
    ckpt: Path,
    cfg: InfererConfig,
    image: np.ndarray,
    s: Settings,
    work: Path,
) -> tuple[bk.Backend, str]:
    """Build backend ``label`` for the window shape of ``cfg`` (exports are per window shape)."""
    bundle = Bundle.find(BUNDLE)
    shape = [cfg.sw_batch_size, image.shape[1], *cfg.roi_size]
    tag = "x".join(str(v) for v in shape)
    ts = work / "export" / "model.ts"
    if not ts.is_file():
        export_torchscript(bundle, ckpt, ts)
    onnx = work / "export" / f"model_{tag}.onnx"
    if not onnx.is_file() and label not in ("eager PyTorch", "TorchScript"):
        export_onnx(bundle, ckpt, onnx, input_shape=shape)
    return build(label, net, ts, onnx, s.threads, shape, _calibration(image, cfg)), tag


def run(s: Settings) -> dict:
    """Time every backend with the bundle's inferer, then the sweep with eager and the fastest backend."""
    bundle = Bundle.find(BUNDLE)
    work = s.workdir / BUNDLE
    ckpt = s.weights or trained_weights(bundle, s.workdir, 4 if s.quick else 30, 4 if s.quick else 12)
    net = network(bundle, ckpt)
    image_np, truth = volume(bundle, s.workdir)
    image = torch.from_numpy(image_np)
    base = bundle_inferer(bundle)
    flops = count_flops(net, torch.zeros(1, image.shape[1], *base.roi_size))
    results: list[Result] = []
    eager_mask: np.ndarray | None = None

    def one(label: str, cfg: InfererConfig) -> Result:
        nonlocal eager_mask
        res = Result(label, cfg)
        try:
            backend, _ = measure(label, net, ckpt, cfg, image_np, s, work)
            res.note = backend.note
            backend.run(_calibration(image_np, cfg, 1)[0])  # warm-up: kernel selection, allocations
            for _ in range(s.repeats):
                wall, in_net, mask = run_inferer(backend, cfg, image)
                res.seconds.append(wall)
                res.network_seconds = (
                    in_net if res.network_seconds is None else min(res.network_seconds, in_net)
                )
        except Exception as err:  # a backend that fails is a result, not a crash
            logger.warning("%s failed: %s", label, err)
            res.note = f"failed: {type(err).__name__}: {err}"[:160]
            return res
        if eager_mask is None:
            eager_mask = mask
        res.dice_vs_eager = mean_dice(mask[None], eager_mask[None], 2)
        res.dice_vs_truth = mean_dice(mask[None], truth[None], 2)
        logger.info("%s, %s: %.1f s/volume (best)", label, cfg.label(), min(res.seconds))
        return res

    for label in BACKENDS:
        results.append(one(label, base))
    sweep: list[Result] = []
    if not s.quick:
        timed = [r for r in results if r.seconds and r.dice_vs_eager is not None and r.dice_vs_eager >= 0.99]
        fastest = min(timed, key=lambda r: min(r.seconds)).backend if timed else "eager PyTorch"
        for cfg in sweep_configs(base):
            for label in dict.fromkeys(("eager PyTorch", fastest)):
                sweep.append(one(label, cfg))
    return {
        "results": results, "sweep": sweep, "base": base, "gflop_per_window": flops / 1e9,
        "weights": str(ckpt), "trained_here": s.weights is None, "repeats": s.repeats,
    }  # fmt: skip


def _rows(results: list[Result]) -> list[list[str]]:
    rows = []
    for r in results:
        if not r.seconds:
            rows.append(
                [r.backend, r.config.label(), str(r.config.windows()), "-", "-", "-", "-", "-", r.note]
            )
            continue
        rows.append([
            r.backend, r.config.label(), str(r.config.windows()), fmt(float(np.median(r.seconds))), fmt(min(r.seconds)),
            fmt(r.network_seconds), fmt(r.dice_vs_eager, 4), fmt(r.dice_vs_truth, 4), r.note,
        ])  # fmt: skip
    return rows


def render(machine: Machine, out: dict, command: str) -> str:
    """Markdown section of the 3D benchmark with the verdict against the 20 s target."""
    base: InfererConfig = out["base"]
    g = out["gflop_per_window"]
    weights = (
        "trained here on MRI phantoms (bundle trainer, short run)" if out["trained_here"] else out["weights"]
    )
    headers = ["backend", "inferer", "windows", "s/volume (median)", "s/volume (best)", "s in network (best)",
               "Dice vs eager", "Dice vs truth", "note"]  # fmt: skip
    lines = [
        "## 3D inference (sliding window, 2x256x256x128)", "", f"Command: `{command}`", "", machine.header(), "",
        f"Bundle breast_mri_seg_3d: its network and SlidingWindowInferer ({base.label()}, mode {base.mode}); "
        f"{g:.2f} GFLOP per window, {base.windows()} windows = {g * base.windows():.0f} GFLOP per volume. Volume: "
        f"an MRI phantom (pre + post-contrast) generated at 256x256x128 voxels of 1x1x2 mm, through the bundle's "
        f"preprocessing. Weights: {weights}. {out['repeats']} timed run(s) per row after a warm-up batch "
        "(median and best quoted); 's in network' is the part spent in the backend, the rest is MONAI's window "
        "cutting and Gaussian-weighted stitching.",
        "",
        table(headers, _rows(out["results"])),
        "",
    ]  # fmt: skip
    timed = [r for r in out["results"] if r.seconds]
    if timed:
        eager = next((r for r in timed if r.backend == "eager PyTorch"), timed[0])
        best = min(
            (r for r in timed if (r.dice_vs_eager or 0) >= 0.99), key=lambda r: min(r.seconds), default=eager
        )
        met = "met" if min(best.seconds) <= TARGET_SECONDS else "not met"
        lines.append(
            f"**Target (<= {TARGET_SECONDS:.0f} s per volume): {met}** with {best.backend}: {min(best.seconds):.1f} s "
            f"(median {np.median(best.seconds):.1f} s); eager PyTorch with the bundle's settings: {min(eager.seconds):.1f} s "
            f"(median {np.median(eager.seconds):.1f} s)."
        )
    if out["sweep"]:
        lines += ["", "Inferer settings sweep (not the bundle's settings; accuracy effects not measured here except "
                  "Dice vs eager with the bundle's settings):", "", table(headers, _rows(out["sweep"]))]  # fmt: skip
    return "\n".join(lines)
