"""The bundle's network for prediction: eager PyTorch, TorchScript, ONNX Runtime or OpenVINO.

All four give a callable ``network(x) -> logits`` that the bundle's own inferer
(``SimpleInferer``, ``SlidingWindowInferer``) drives, so pre- and postprocessing are the
bundle's in every case:

- ``torch``: ``network_def`` of ``inference.json`` with the checked weights;
- ``torchscript``: a ``model.ts`` from MONAI's ``ckpt_export`` (made from the weights when no file
  is given), loaded with ``torch.jit.load``;
- ``onnx``: a ``.onnx`` from MONAI's ``onnx_export`` (made from the weights when no file is given),
  run by ONNX Runtime's CPU execution provider;
- ``openvino``: the same ONNX export compiled by OpenVINO's CPU plugin (dynamic batch and
  spatial axes), inference precision f32, or bf16 where the CPU has AVX512-BF16 / AMX
  (``--precision bf16``; :mod:`sum_monai.utils.precision` decides, never emulated).

Exports are cached (:func:`cached_export`): a second run with the same weights, bundle config and
library versions reuses the file instead of exporting again (about 10 s per network for ONNX).

The fold members of an ensemble bundle (``scripts.ensemble.EnsembleInferer``) are converted to the
same backend (:func:`convert_members`), so every network pass runs in it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from sum_monai.errors import ConfigError

if TYPE_CHECKING:
    from sum_monai.bundle.locate import Bundle

__all__ = ["BACKENDS", "OnnxRuntimeNetwork", "OpenVinoNetwork", "convert_members", "export_input_shape", "load_backend"]

BACKENDS = ("torch", "torchscript", "onnx", "openvino")
#: Largest spatial size used to trace an ONNX export (its spatial axes are dynamic anyway).
MAX_TRACE_SIZE = 256


class OnnxRuntimeNetwork(torch.nn.Module):
    """An ONNX model run by ONNX Runtime, callable like the PyTorch network it was exported from.

    Args:
        path: the ``.onnx`` file (input ``image``, output ``pred``; dynamic batch and spatial axes).
        threads: intra-op threads (default: ``torch.get_num_threads()``, which follows
            ``OMP_NUM_THREADS``).

    Example:
        >>> net = OnnxRuntimeNetwork("model.onnx")  # doctest: +SKIP
        >>> logits = SlidingWindowInferer((96, 96, 32))(image[None], net)  # doctest: +SKIP
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        super().__init__()
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ConfigError(f"{path}: not a usable ONNX model: {str(err).strip().splitlines()[0]}") from err
        self.input_name = self.session.get_inputs()[0].name
        self.path = Path(path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the model on a ``(B, C, *spatial)`` batch; returns logits on ``x``'s device."""
        feed = {self.input_name: np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)}
        out = self.session.run(None, feed)[0]
        return torch.from_numpy(out).to(x.device)


class OpenVinoNetwork(torch.nn.Module):
    """An ONNX model compiled by OpenVINO's CPU plugin, callable like the PyTorch network.

    Args:
        path: the ``.onnx`` file (dynamic batch and spatial axes).
        precision: ``fp32`` or ``bf16`` (OpenVINO's ``INFERENCE_PRECISION_HINT``), or ``int8``
            (NNCF post-training quantisation on ``calibration``, the other layers in f32).
        threads: inference threads (default ``torch.get_num_threads()``).
        calibration: network inputs to calibrate INT8 on (:mod:`sum_monai.predict.int8`).
    """

    def __init__(
        self, path: str | Path, precision: str = "fp32", threads: int | None = None,
        calibration: Sequence[torch.Tensor] | None = None,
    ) -> None:  # fmt: skip
        try:
            import openvino as ov
        except ImportError as err:
            raise ConfigError("--backend openvino needs OpenVINO: pip install 'sum_monai[bench]' (or openvino)") from err
        super().__init__()
        if precision == "int8" and not calibration:
            raise ConfigError("--precision int8 needs calibration images (--calibration DATALIST)")
        core = ov.Core()
        try:
            if precision == "int8":
                from sum_monai.predict.int8 import quantize

                model = quantize(Path(path), calibration)
            else:
                model = core.read_model(str(path))
            self.compiled = core.compile_model(model, "CPU", {
                "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
                "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads()),
                "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
            })  # fmt: skip
        except Exception as err:  # OpenVINO raises RuntimeError subclasses of its own
            raise ConfigError(f"{path}: OpenVINO cannot compile it: {str(err).strip().splitlines()[0]}") from err
        self.request = self.compiled.create_infer_request()
        self.path, self.precision = Path(path), precision

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the model on a ``(B, C, *spatial)`` batch; returns float32 logits on ``x``'s device."""
        feed = np.ascontiguousarray(x.detach().cpu().float().numpy())
        out = self.request.infer({0: feed})[self.compiled.output(0)]
        return torch.from_numpy(np.array(out, dtype=np.float32, copy=True)).to(x.device)


def export_cache_dir() -> Path:
    """Where exports are cached: ``$SUM_MONAI_CACHE/exports``, else ``$XDG_CACHE_HOME`` or ``~/.cache``."""
    import os

    root = os.environ.get("SUM_MONAI_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "sum_monai"
    )
    return Path(root) / "exports"


def cached_export(
    kind: str, bundle: Bundle, weights_file: Path, overrides: Mapping[str, Any] | None, make: Any
) -> Path:
    """The export ``make(path)`` would write, from the cache when the same one was made before.

    The key is the SHA-256 of the weights, of ``inference.json`` and ``metadata.json``, the network
    overrides and the torch / MONAI versions; ``make`` writes atomically (whole file or none), so a
    killed export leaves no entry. A cache that cannot be written is skipped (the export is made
    in the run's scratch folder instead, as before).
    """
    import hashlib
    import json

    import monai

    h = hashlib.sha256()
    for path in (weights_file, bundle.config("inference.json"), bundle.config("metadata.json")):
        h.update(Path(path).read_bytes())
    h.update(json.dumps(dict(overrides or {}), sort_keys=True, default=str).encode())
    h.update(f"{kind} torch {torch.__version__} monai {monai.__version__}".encode())
    target = export_cache_dir() / f"{bundle.name}-{h.hexdigest()[:24]}" / f"model.{kind}"
    if target.is_file():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return make(None)
    return make(target)


def export_input_shape(bundle: Bundle) -> list[int]:
    """Shape used to trace an ONNX export: the metadata's input, spatial sizes at most 256."""
    from sum_monai.bundle.export import example_input_shape

    shape = example_input_shape(bundle)
    return shape[:2] + [min(int(s), MAX_TRACE_SIZE) for s in shape[2:]]


def load_backend(
    backend: str,
    bundle: Bundle,
    network: torch.nn.Module | None,
    weights_file: Path,
    work_dir: Path,
    device: Any,
    model_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    precision: str = "fp32",
    calibration: Sequence[torch.Tensor] | None = None,
) -> torch.nn.Module:
    """The network to predict with.

    Args:
        backend: ``torch``, ``torchscript`` or ``onnx``.
        bundle: the bundle (its ``inference.json`` ``network_def`` is exported).
        network: the eager network, weights already loaded (returned for ``torch``); None when
            ``model_file`` is given.
        weights_file: a bare state dict of the checked weights (exported for the other backends).
        work_dir: where exports are written when ``model_file`` is not given.
        device: torch device for ``torch`` / ``torchscript`` (ONNX Runtime runs on the CPU).
        model_file: an existing ``model.ts`` / ``.onnx`` to use instead of exporting.
        overrides: the run's config overrides; those of ``network_def`` shape the export.
        precision: the resolved precision (``fp32`` / ``bf16`` / ``int8``) of the ``openvino`` backend.
        calibration: network inputs for ``int8``.

    Raises:
        ConfigError: unknown backend, unreadable model file.
    """
    if backend == "torch":
        if network is None:
            raise ConfigError("the torch backend needs the network with its weights")
        return network.eval()
    if backend == "torchscript":
        path = Path(model_file) if model_file else None
        if path is None:
            from sum_monai.bundle.export import export_torchscript

            path = cached_export("ts", bundle, weights_file, overrides, lambda out: export_torchscript(
                bundle, weights_file, out or work_dir / "model.ts", overrides))  # fmt: skip
        try:
            return torch.jit.load(str(path), map_location=device).eval()
        except Exception as err:
            raise ConfigError(
                f"{path}: not a loadable TorchScript model: {str(err).strip().splitlines()[0]}"
            ) from err
    if backend in ("onnx", "openvino"):
        path = Path(model_file) if model_file else None
        if path is None:
            from sum_monai.bundle.export import export_onnx

            path = cached_export("onnx", bundle, weights_file, overrides, lambda out: export_onnx(
                bundle, weights_file, out or work_dir / "model.onnx", input_shape=export_input_shape(bundle),
                overrides=overrides))  # fmt: skip
        return OnnxRuntimeNetwork(path) if backend == "onnx" else OpenVinoNetwork(path, precision, calibration=calibration)
    raise ConfigError(f"unknown backend {backend!r}; one of {', '.join(BACKENDS)}")


def convert_members(
    inferer: Any, backend: str, bundle: Bundle, work_dir: Path, device: Any,
    overrides: Mapping[str, Any] | None = None, precision: str = "fp32",
    calibration: Sequence[torch.Tensor] | None = None,
) -> int:  # fmt: skip
    """Run the further fold members of an ensemble inferer in ``backend`` too; how many there are.

    An inferer without ``convert_members`` (not ``scripts.ensemble.EnsembleInferer``) is left alone.
    Each member is exported from its own weights file into ``work_dir/member-<name>/``.
    """
    if backend == "torch" or not hasattr(inferer, "convert_members"):
        return len(getattr(inferer, "weights", []) or [])

    def convert(network: torch.nn.Module, weights: str) -> torch.nn.Module:
        folder = work_dir / f"member-{Path(weights).stem}"
        folder.mkdir(parents=True, exist_ok=True)
        return load_backend(backend, bundle, network, Path(weights), folder, device, None, overrides, precision, calibration)

    inferer.convert_members(convert)
    return len(inferer.weights)
