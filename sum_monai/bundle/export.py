"""Exports of trained bundles: TorchScript, ONNX, the weights in the bundle folder, the archive.

TorchScript and ONNX files come from MONAI's own ``ckpt_export`` / ``onnx_export``, which also
embed the bundle's metadata and configs; nothing here re-implements them.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sum_monai.bundle.locate import Bundle
from sum_monai.bundle.recipe import BUNDLE_PARTS
from sum_monai.utils.atomic import atomic_dir, atomic_path, atomic_write_text


def example_input_shape(bundle: Bundle, batch: int = 1) -> list[int]:
    """Network input shape ``[batch, channels, *spatial]`` from the bundle's metadata."""
    spec = bundle.metadata["network_data_format"]["inputs"]["image"]
    spatial = [int(s) for s in spec["spatial_shape"]]
    return [batch, int(spec["num_channels"]), *spatial]


def export_torchscript(
    bundle: Bundle, ckpt: str | Path, out: str | Path, overrides: Mapping[str, Any] | None = None
) -> Path:
    """Script the bundle's ``network_def`` with the weights of ``ckpt`` into ``out`` (``model.ts``).

    ``overrides`` are ``inference.json`` ids and values, passed to MONAI's ``ckpt_export`` as
    ``python -m monai.bundle ckpt_export --key value`` would; a trained run's bundle needs none
    (its recipe is in its configs).
    """
    from monai.bundle import ckpt_export

    out = Path(out)
    with atomic_path(out) as tmp:
        ckpt_export(
            net_id="network_def",
            filepath=str(tmp),
            ckpt_file=str(ckpt),
            meta_file=str(bundle.config("metadata.json")),
            config_file=str(bundle.config("inference.json")),
            bundle_root=str(bundle.root),
            **dict(overrides or {}),
        )
    return out


def export_onnx(
    bundle: Bundle,
    ckpt: str | Path,
    out: str | Path,
    input_shape: Sequence[int] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Path:
    """Export the network with the weights of ``ckpt`` to ONNX (dynamic batch and spatial axes).

    ``overrides``: ``inference.json`` ids and values, as for :func:`export_torchscript`.
    """
    from monai.bundle import onnx_export

    out = Path(out)
    shape = list(input_shape or example_input_shape(bundle))
    spatial_axes = {i: f"dim{i}" for i in range(2, len(shape))}
    with atomic_path(out) as tmp:
        onnx_export(
            net_id="network_def",
            filepath=str(tmp),
            ckpt_file=str(ckpt),
            meta_file=str(bundle.config("metadata.json")),
            config_file=str(bundle.config("inference.json")),
            input_shape=shape,
            converter_kwargs={
                "input_names": ["image"],
                "output_names": ["pred"],
                "dynamic_axes": {"image": {0: "batch", **spatial_axes}, "pred": {0: "batch", **spatial_axes}},
            },
            bundle_root=str(bundle.root),
            **dict(overrides or {}),
        )
    return out


def add_weights(
    bundle: Bundle, weights: str | Path, torchscript: str | Path | None = None, eval_metrics: dict | None = None
) -> Bundle:
    """Put trained weights into a bundle folder: ``models/model.pt`` (and ``model.ts``), ``eval_metrics``.

    ``models/`` is replaced whole and ``metadata.json`` atomically, so a crash leaves the earlier
    weights or the new ones, never a mix.

    Args:
        bundle: a run's bundle (its recipe already in its configs).
        weights: the trained ``model.pt``.
        torchscript: optional ``model.ts`` exported from this bundle.
        eval_metrics: optional measured metrics written into ``metadata.json``'s ``eval_metrics``.
    """
    with atomic_dir(bundle.root / "models", overwrite=True) as tmp:
        shutil.copy2(weights, tmp / "model.pt")
        if torchscript:
            shutil.copy2(torchscript, tmp / "model.ts")
    if eval_metrics is not None:
        meta_path = bundle.config("metadata.json")
        meta = json.loads(meta_path.read_text())
        meta["eval_metrics"] = eval_metrics
        atomic_write_text(meta_path, json.dumps(meta, indent=4) + "\n")
    return Bundle(bundle.root)


def archive_bundle(bundle: Bundle, out_zip: str | Path) -> Path:
    """Zip a bundle folder as ``<name>/...`` (the model-zoo download layout)."""
    out_zip = Path(out_zip)
    with atomic_path(out_zip) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(bundle.root.rglob("*")):
            rel = path.relative_to(bundle.root)
            if path.is_file() and rel.parts[0] in (*BUNDLE_PARTS, "models") and "__pycache__" not in rel.parts:
                zf.write(path, f"{bundle.name}/{rel}")
    return out_zip
