"""Exports of trained bundles: TorchScript, ONNX, and the bundle folder / archive itself.

TorchScript and ONNX files come from MONAI's own ``ckpt_export`` / ``onnx_export``, which also
embed the bundle's metadata and configs; nothing here re-implements them.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Sequence
from pathlib import Path

from sum_monai.bundle.locate import Bundle
from sum_monai.utils.atomic import atomic_dir, atomic_path

#: What a bundle folder holds; everything else (eval/, caches) stays out of archives.
BUNDLE_PARTS = ("configs", "scripts", "docs", "LICENSE")


def example_input_shape(bundle: Bundle, batch: int = 1) -> list[int]:
    """Network input shape ``[batch, channels, *spatial]`` from the bundle's metadata."""
    spec = bundle.metadata["network_data_format"]["inputs"]["image"]
    spatial = [int(s) for s in spec["spatial_shape"]]
    return [batch, int(spec["num_channels"]), *spatial]


def export_torchscript(bundle: Bundle, ckpt: str | Path, out: str | Path) -> Path:
    """Script the bundle's ``network_def`` with the weights of ``ckpt`` into ``out`` (``model.ts``)."""
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
        )
    return out


def export_onnx(bundle: Bundle, ckpt: str | Path, out: str | Path, input_shape: Sequence[int] | None = None) -> Path:
    """Export the network with the weights of ``ckpt`` to ONNX (dynamic batch and spatial axes)."""
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
        )
    return out


def package_bundle(
    bundle: Bundle, out_dir: str | Path, weights: str | Path, torchscript: str | Path | None = None,
    eval_metrics: dict | None = None,
) -> Bundle:
    """Write a complete trained bundle: ``bundle``'s files plus ``models/model.pt`` (and ``model.ts``).

    Args:
        bundle: the source bundle (configs, scripts, docs, LICENSE are copied).
        out_dir: the new bundle folder (replaced atomically if it exists).
        weights: the trained ``model.pt``.
        torchscript: optional ``model.ts`` to include.
        eval_metrics: optional measured metrics written into ``metadata.json``'s ``eval_metrics``.
    """
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, overwrite=True) as tmp:
        for part in BUNDLE_PARTS:
            src = bundle.root / part
            if src.is_dir():
                shutil.copytree(src, tmp / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            elif src.is_file():
                shutil.copy2(src, tmp / part)
        (tmp / "models").mkdir()
        shutil.copy2(weights, tmp / "models" / "model.pt")
        if torchscript:
            shutil.copy2(torchscript, tmp / "models" / "model.ts")
        if eval_metrics is not None:
            meta_path = tmp / "configs" / "metadata.json"
            meta = json.loads(meta_path.read_text())
            meta["eval_metrics"] = eval_metrics
            meta_path.write_text(json.dumps(meta, indent=4) + "\n")
    return Bundle(out_dir.resolve())


def archive_bundle(bundle: Bundle, out_zip: str | Path) -> Path:
    """Zip a bundle folder as ``<name>/...`` (the model-zoo download layout)."""
    out_zip = Path(out_zip)
    with atomic_path(out_zip) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(bundle.root.rglob("*")):
            rel = path.relative_to(bundle.root)
            if path.is_file() and rel.parts[0] in (*BUNDLE_PARTS, "models") and "__pycache__" not in rel.parts:
                zf.write(path, f"{bundle.name}/{rel}")
    return out_zip
