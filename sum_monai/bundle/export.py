"""Exports of trained bundles: TorchScript, ONNX, and the bundle folder / archive itself.

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
from sum_monai.utils.atomic import atomic_dir, atomic_path

#: What a bundle folder holds; everything else (eval/, caches) stays out of archives.
BUNDLE_PARTS = ("configs", "scripts", "docs", "LICENSE")
#: Overrides that describe one run on one machine (data, folders, device), never a trained bundle.
RUN_ONLY_KEYS = frozenset(
    {"data_list_file_path", "dataset_dir", "ckpt_dir", "ckpt_path", "output_dir", "bundle_root", "resume",
     "device", "eval_split", "prediction_root", "cache_rate", "num_workers"}
)  # fmt: skip


def recipe_overrides(overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The overrides that change the model or its pre/post-processing (not run paths or device)."""
    return {k: v for k, v in (overrides or {}).items() if k not in RUN_ONLY_KEYS}


def bake_overrides(config_file: Path, overrides: Mapping[str, Any]) -> None:
    """Write ``overrides`` into a bundle config file, for the ids that file defines.

    A trained bundle must describe the network its weights fit: a run trained with
    ``image_size=128`` or other ``network_def`` settings gets them written into its copied
    ``train.json`` / ``inference.json`` / ``evaluate.json``; metadata overrides (``_meta_#...``)
    go into ``metadata.json``.
    """
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(config_file))
    if config_file.name == "metadata.json":
        updates = {k[len("_meta_#") :]: v for k, v in overrides.items() if k.startswith("_meta_#")}
        # the declared network shape follows the size the bundle was trained at
        size = overrides.get("pad_size") or overrides.get("image_size") or overrides.get("roi_size")
        if isinstance(size, str):  # an expression such as "$[@image_size, @image_size]"
            size = overrides.get("image_size")
        for io in ("inputs#image", "outputs#pred"):
            key = f"network_data_format#{io}#spatial_shape"
            shape = parser.get(key)
            if size is not None and key not in updates and isinstance(shape, list):
                sizes = list(size) if isinstance(size, (list, tuple)) else [size] * len(shape)
                if len(sizes) == len(shape):
                    updates[key] = sizes
    else:
        updates = {k: v for k, v in overrides.items() if not k.startswith("_meta_") and k in parser}
    if updates:
        parser.update(updates)
        content = parser.get()
        if not content.get("_meta_"):  # ConfigParser adds an empty one; the source file had none
            content.pop("_meta_", None)
        config_file.write_text(json.dumps(content, indent=4) + "\n")


def example_input_shape(bundle: Bundle, batch: int = 1) -> list[int]:
    """Network input shape ``[batch, channels, *spatial]`` from the bundle's metadata."""
    spec = bundle.metadata["network_data_format"]["inputs"]["image"]
    spatial = [int(s) for s in spec["spatial_shape"]]
    return [batch, int(spec["num_channels"]), *spatial]


def export_torchscript(
    bundle: Bundle, ckpt: str | Path, out: str | Path, overrides: Mapping[str, Any] | None = None
) -> Path:
    """Script the bundle's ``network_def`` with the weights of ``ckpt`` into ``out`` (``model.ts``).

    ``overrides`` are the run's config overrides (those changing ``network_def`` matter).
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
            **_network_overrides(bundle, overrides),
        )
    return out


def _network_overrides(bundle: Bundle, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The run's overrides that can shape ``network_def`` in ``inference.json``.

    Not only ``network_def#...``: ``network_def`` reads variables such as ``num_classes`` (the
    4-class tissue recipe) or ``image_size``, so every recipe override of an id that
    ``inference.json`` defines is passed on.
    """
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle.config("inference.json")))
    return {
        k: v
        for k, v in recipe_overrides(overrides).items()
        if k.startswith("network_def") or (not k.startswith("_meta_") and k in parser)
    }


def export_onnx(
    bundle: Bundle,
    ckpt: str | Path,
    out: str | Path,
    input_shape: Sequence[int] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Path:
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
            **_network_overrides(bundle, overrides),
        )
    return out


def package_bundle(
    bundle: Bundle, out_dir: str | Path, weights: str | Path, torchscript: str | Path | None = None,
    eval_metrics: dict | None = None, overrides: Mapping[str, Any] | None = None,
) -> Bundle:
    """Write a complete trained bundle: ``bundle``'s files plus ``models/model.pt`` (and ``model.ts``).

    Args:
        bundle: the source bundle (configs, scripts, docs, LICENSE are copied).
        out_dir: the new bundle folder (replaced atomically if it exists).
        weights: the trained ``model.pt``.
        torchscript: optional ``model.ts`` to include.
        eval_metrics: optional measured metrics written into ``metadata.json``'s ``eval_metrics``.
        overrides: the run's config overrides; the recipe ones (not paths or device) are baked
            into the copied configs so the bundle describes the network its weights fit.
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
        recipe = recipe_overrides(overrides)
        if recipe:  # evaluate.json / multi_gpu_train.json only patch train.json: nothing to bake there
            for name in ("train.json", "inference.json", "metadata.json"):
                if (tmp / "configs" / name).is_file():
                    bake_overrides(tmp / "configs" / name, recipe)
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
