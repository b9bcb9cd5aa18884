"""CPU inference backends behind one call signature: ``float32 NC... array -> float32 logits``.

Each builder wraps a library's own runtime (eager PyTorch, TorchScript, ONNX Runtime, OpenVINO
FP32 / BF16, OpenVINO INT8 after NNCF post-training quantisation); nothing here implements
inference itself. The models come from the bundle's own exports (``sum_monai.bundle.export``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

Run = Callable[[np.ndarray], np.ndarray]

#: ONNX Runtime graph optimisation levels by the names used in the tables.
ORT_LEVELS = ("disable", "basic", "extended", "all")


@dataclass
class Backend:
    """A named way to run a network: ``run(x)`` returns the logits for a batch ``x``."""

    name: str
    run: Run
    note: str = ""

    def torch_callable(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The backend as a ``tensor -> tensor`` callable (what MONAI inferers call)."""

        def call(x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(self.run(x.detach().cpu().numpy())))

        return call


def eager(net: torch.nn.Module, channels_last: bool = False) -> Backend:
    """Eager PyTorch in ``inference_mode``; ``channels_last`` uses the NHWC / NDHWC memory format."""
    net = net.eval()
    fmt = None
    if channels_last:
        fmt = torch.channels_last if next(net.parameters()).dim() == 4 else torch.channels_last_3d
        net = net.to(memory_format=fmt)

    def run(x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x)
        if fmt is not None:
            t = t.contiguous(memory_format=fmt)
        with torch.inference_mode():
            return net(t).contiguous().numpy()

    return Backend("eager PyTorch" + (" (channels_last)" if channels_last else ""), run)


def eager_bf16(net: torch.nn.Module) -> Backend:
    """Eager PyTorch as ``sum-monai predict --precision bf16`` runs it: the precision rules' bf16 (autocast, channels-last).

    Only meaningful where :func:`sum_monai.utils.precision.cpu_bf16_native` (elsewhere predict falls back to fp32).
    """
    from sum_monai.utils.precision import resolve_precision

    precision = resolve_precision("bf16", "cpu")
    net = net.eval().to(memory_format=torch.channels_last)

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), precision.autocast():
            return net(precision.layout(torch.from_numpy(x))).float().contiguous().numpy()

    return Backend(f"eager PyTorch, --precision {precision.name} (autocast, channels_last)", run)


def torchscript(path: str | Path, optimize: bool = False) -> Backend:
    """A TorchScript file (``model.ts``); ``optimize`` freezes it and runs ``optimize_for_inference``."""
    module = torch.jit.load(str(path), map_location="cpu").eval()
    if optimize:
        module = torch.jit.optimize_for_inference(torch.jit.freeze(module))

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(x)).contiguous().numpy()

    name = "TorchScript" + (" (frozen, optimize_for_inference)" if optimize else "")
    return Backend(name, run)


def onnxruntime(path: str | Path, threads: int, level: str = "all") -> Backend:
    """ONNX Runtime CPU execution provider with ``threads`` intra-op threads and optimisation ``level``."""
    import onnxruntime as ort

    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = levels[level]
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name_in = session.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return session.run(None, {name_in: x})[0]

    return Backend(f"ONNX Runtime (opt. {level})", run)


def pad_batch(x: np.ndarray, batch: int) -> np.ndarray:
    """``x`` zero-padded along the batch axis to ``batch`` items (unchanged if it has that many)."""
    n = x.shape[0]
    if n == batch:
        return x
    return np.concatenate([x, np.zeros((batch - n, *x.shape[1:]), dtype=x.dtype)])


def fixed_batch(run: Run, batch: int) -> Run:
    """Run a static-shape model on any batch up to ``batch`` by zero-padding the batch axis."""

    def call(x: np.ndarray) -> np.ndarray:
        return run(pad_batch(x, batch))[: x.shape[0]]

    return call


def _openvino_model(path: str | Path, shape: Sequence[int]) -> Any:  # openvino.Model
    import openvino as ov

    model = ov.Core().read_model(str(path))
    model.reshape(list(shape))  # static shapes let the CPU plugin pick its fastest kernels
    return model


def _compile_openvino(model: Any, threads: int, precision: str, shape: Sequence[int]) -> Run:
    import openvino as ov

    compiled = ov.Core().compile_model(
        model,
        "CPU",
        {
            "INFERENCE_NUM_THREADS": threads,
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": precision,
        },
    )
    request = compiled.create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:
        return np.array(request.infer({0: x})[0], copy=True)

    return fixed_batch(run, int(shape[0]))


def openvino(path: str | Path, threads: int, shape: Sequence[int], precision: str = "f32") -> Backend:
    """OpenVINO CPU plugin on the ONNX file, static ``shape``, inference precision ``f32`` or ``bf16``."""
    run = _compile_openvino(_openvino_model(path, shape), threads, precision, shape)
    return Backend(f"OpenVINO {precision.upper()}", run)


def openvino_int8(
    path: str | Path, threads: int, shape: Sequence[int], calibration: Sequence[np.ndarray], rest: str = "f32"
) -> Backend:
    """OpenVINO INT8: NNCF post-training quantisation of the ONNX model on ``calibration`` batches.

    NNCF leaves some layers in floating point (transposed convolutions, the output layers);
    ``rest`` is the precision those run in (``f32`` or ``bf16``).

    Args:
        path: the ONNX file.
        threads: inference threads.
        shape: static input shape (the calibration batches are padded to it).
        calibration: a few preprocessed input batches (not the evaluation images).
        rest: inference precision of the layers left unquantised.
    """
    from sum_monai.predict.int8 import quantize

    batches = [pad_batch(np.ascontiguousarray(c, dtype=np.float32), int(shape[0])) for c in calibration]
    samples = sum(len(c) for c in calibration)
    quantized = quantize(_openvino_model(path, shape), batches)
    run = _compile_openvino(quantized, threads, rest, shape)
    name = "OpenVINO INT8 (NNCF PTQ" + (", rest BF16)" if rest == "bf16" else ")")
    return Backend(name, run, note=f"calibrated on {samples} inputs")


def onnxruntime_int8(
    path: str | Path, threads: int, calibration: Sequence[np.ndarray], work: str | Path
) -> Backend:
    """ONNX Runtime INT8: its own static QDQ quantisation (u8 activations, s8 per-channel weights).

    Args:
        path: the ONNX file.
        threads: intra-op threads.
        calibration: a few preprocessed input batches (not the evaluation images).
        work: folder for the pre-processed and quantised ONNX files.
    """
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    prep, out = work / "model_prep.onnx", work / "model_int8.onnx"
    quant_pre_process(str(path), str(prep), skip_symbolic_shape=True)
    name_in = ort.InferenceSession(str(prep), providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{name_in: np.ascontiguousarray(c, dtype=np.float32)} for c in calibration])

        def get_next(self) -> dict | None:
            return next(self.items, None)

    quantize_static(
        str(prep), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
    )  # fmt: skip
    backend = onnxruntime(out, threads, "all")
    samples = sum(len(c) for c in calibration)
    return Backend("ONNX Runtime INT8 (static QDQ)", backend.run, note=f"calibrated on {samples} inputs")
