"""Deployment exports (``sum-monai export``): checked weights in, a verified TorchScript / ONNX out.

1. the checkpoint is checked (:func:`sum_monai.bundle.weights.load_checked_state_dict`: tensors
   only, keys and shapes of the bundle's ``network_def``);
2. MONAI's ``ckpt_export`` / ``onnx_export`` write the export (:mod:`sum_monai.bundle.export`);
3. the export is reloaded (``torch.jit.load`` / ONNX Runtime) and run on a seeded random input next
   to the eager network; it is moved to ``out`` only if the outputs agree within
   :data:`TOLERANCE`, so a file at ``out`` is always a verified export.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sum_monai.bundle.locate import Bundle
from sum_monai.errors import ConfigError

__all__ = ["FORMATS", "TOLERANCE", "ExportResult", "export_checked"]

FORMATS = ("torchscript", "onnx")
#: Largest accepted |export - eager| on the check input (float32 logits).
TOLERANCE = 1e-3
#: Spatial size of the check input (divisible by 16 for the bundles' UNets).
CHECK_SIZE = {2: (64, 64), 3: (32, 32, 16)}


@dataclass(frozen=True)
class ExportResult:
    """A verified export."""

    path: Path
    weights: Path
    weights_sha256: str
    input_shape: tuple[int, ...]
    max_abs_diff: float


def export_checked(
    bundle: Bundle,
    fmt: str,
    out: str | Path,
    weights: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ExportResult:
    """Export ``weights`` of ``bundle`` to ``fmt`` at ``out`` after checking them; verify the export.

    Args:
        bundle: the bundle.
        fmt: ``torchscript`` or ``onnx``.
        out: the file to write.
        weights: checkpoint; default the bundle's ``models/model.pt``.
        overrides: config overrides the model was trained with (those of ``network_def`` shape
            the network; a packaged trained bundle already carries them in its configs).

    Raises:
        ConfigError: bad weights (missing, pickled objects, wrong shapes), unknown format, or an
            export whose outputs differ from the eager network's by more than :data:`TOLERANCE`.
    """
    import torch

    from sum_monai.bundle.export import export_onnx, export_torchscript
    from sum_monai.bundle.weights import default_checkpoint, load_checked_state_dict, network_from_bundle
    from sum_monai.predict.backends import OnnxRuntimeNetwork, export_input_shape

    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; one of {', '.join(FORMATS)}")
    weights_path = Path(weights) if weights is not None else default_checkpoint(bundle)
    network = network_from_bundle(bundle, overrides).eval()
    state = load_checked_state_dict(bundle, weights_path, network=network)
    network.load_state_dict(state)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    trace_shape = export_input_shape(bundle)
    shape = (1, trace_shape[1], *CHECK_SIZE[len(trace_shape) - 2])
    with tempfile.TemporaryDirectory(prefix=".sum_monai-export-", dir=out.parent) as tmp:
        bare = Path(tmp) / "weights.pt"
        torch.save(state, bare)  # ckpt_export / onnx_export read a bare state dict
        exported = Path(tmp) / out.name
        if fmt == "torchscript":
            export_torchscript(bundle, bare, exported, overrides)
            model = torch.jit.load(str(exported), map_location="cpu").eval()
        else:
            export_onnx(bundle, bare, exported, input_shape=trace_shape, overrides=overrides)
            model = OnnxRuntimeNetwork(exported)
        x = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            diff = float((model(x) - network(x)).abs().max())
        if not diff <= TOLERANCE:
            raise ConfigError(
                f"{fmt} export of {weights_path} differs from the eager network by {diff:.3g} (> {TOLERANCE})"
            )
        os.replace(exported, out)
    digest = hashlib.sha256(weights_path.read_bytes()).hexdigest()
    return ExportResult(out, weights_path, digest, shape, diff)
