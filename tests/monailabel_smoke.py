"""Small MONAI Bundles and inputs for the MONAI Label test, shaped like the project's real bundles.

* ``smoke_seg_2d``: one grey PNG channel -> 2D UNet -> uint8 label map of the PNG's size, laid out
  like ``bundles/breast_us_seg_2d`` (PILReader, percentile scaling, resize longest side + pad,
  ``Invertd`` back to the input grid, argmax to uint8, channel axis dropped).
* ``smoke_seg_3d``: a 2-channel DCE NIfTI (pre-contrast, first post-contrast as the 4th axis) ->
  3D UNet with a sliding window -> uint8 label map on the input's voxel grid (``Orientationd`` to
  RAS and ``Spacingd`` to 1 x 1 x 2 mm, both undone with ``Invertd``), like
  ``bundles/breast_mri_seg_3d``.

Weights are a random-init MONAI UNet (seeded) saved as ``models/model.pt``. Each bundle builds its
network through its own ``scripts/smoke.py``, both packages named ``scripts``, so serving both in
one app proves that MONAI Label keeps each bundle's ``scripts`` apart (a 3D net loaded with 2D
weights fails).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from PIL import Image

from sum_monai.utils.atomic import atomic_path, atomic_write_text

NAME_2D = "smoke_seg_2d"
NAME_3D = "smoke_seg_3d"

_SCRIPT = '''"""Network of the {name} smoke bundle, built here to exercise a bundle's own scripts/ package."""

from monai.networks.nets import UNet


def network() -> UNet:
    """Return the {dims}D UNet whose random-init weights are models/model.pt."""
    return UNet(spatial_dims={dims}, in_channels={in_ch}, out_channels=2, channels=(8, 16, 32), strides=(2, 2),
                num_res_units=1, norm="batch")
'''


def network(dims: int, in_ch: int) -> torch.nn.Module:
    """The smoke bundles' UNet (the same as their ``scripts/smoke.py`` builds)."""
    from monai.networks.nets import UNet

    return UNet(spatial_dims=dims, in_channels=in_ch, out_channels=2, channels=(8, 16, 32), strides=(2, 2),
                num_res_units=1, norm="batch")  # fmt: skip


def _metadata(name: str, modality: str, in_ch: int, shape: list[int], label: str) -> dict[str, Any]:
    """metadata.json with the network_data_format MONAI Label reads."""
    channels = {"0": "image"} if in_ch == 1 else {"0": "pre-contrast", "1": "post-contrast"}
    return {
        "version": "0.0.1",
        "changelog": {"0.0.1": "smoke bundle for the MONAI Label test"},
        "monai_version": "1.6.1",
        "pytorch_version": "2.13.0",
        "numpy_version": "2.4.6",
        "name": name,
        "task": f"smoke test: {label} vs background",
        "description": f"random-init {len(shape)}D UNet ({name}); for tests only",
        "authors": "sum_monai developers",
        "copyright": "Copyright (c) sum_monai developers",
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image", "format": "magnitude", "modality": modality, "num_channels": in_ch,
                    "spatial_shape": shape, "dtype": "float32", "value_range": [0, 1],
                    "is_patch_data": False, "channel_def": channels,
                }
            },
            "outputs": {
                "pred": {
                    "type": "image", "format": "segmentation", "num_channels": 2, "spatial_shape": shape,
                    "dtype": "float32", "value_range": [0, 1], "is_patch_data": False,
                    "channel_def": {"0": "background", "1": label},
                }
            },
        },
    }  # fmt: skip


def _inference_2d() -> dict[str, Any]:
    """inference.json of the 2D smoke bundle (the layout of bundles/breast_us_seg_2d)."""
    return {
        "imports": ["$import torch"],
        "bundle_root": ".",
        "device": "$torch.device('cpu')",
        "image_size": 64,
        "network_def": {"_target_": "scripts.smoke.network"},
        "network": "$@network_def.to(@device)",
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "LoadImaged", "keys": "image", "reader": "PILReader",
                 "converter": "$lambda im: im.convert('L')", "image_only": True, "ensure_channel_first": True},
                {"_target_": "ScaleIntensityRangePercentilesd", "keys": "image", "lower": 1, "upper": 99,
                 "b_min": 0.0, "b_max": 1.0, "clip": True},
                {"_target_": "Resized", "keys": "image", "spatial_size": "@image_size", "size_mode": "longest",
                 "mode": "bilinear", "anti_aliasing": True},
                {"_target_": "SpatialPadd", "keys": "image", "spatial_size": "$[@image_size, @image_size]"},
                {"_target_": "EnsureTyped", "keys": "image", "dtype": "$torch.float32"},
            ],
        },
        "inferer": {"_target_": "SimpleInferer"},
        "postprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "Activationsd", "keys": "pred", "softmax": True},
                {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image",
                 "nearest_interp": False, "to_tensor": True},
                {"_target_": "AsDiscreted", "keys": "pred", "argmax": True, "dtype": "$torch.uint8"},
                {"_target_": "SqueezeDimd", "keys": "pred", "dim": 0},
            ],
        },
    }  # fmt: skip


def _inference_3d() -> dict[str, Any]:
    """inference.json of the 3D smoke bundle (2-channel DCE NIfTI, sliding window)."""
    return {
        "imports": ["$import torch"],
        "bundle_root": ".",
        "device": "$torch.device('cpu')",
        "network_def": {"_target_": "scripts.smoke.network"},
        "network": "$@network_def.to(@device)",
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "LoadImaged", "keys": "image", "reader": "NibabelReader", "image_only": True,
                 "ensure_channel_first": True},
                {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
                {"_target_": "Spacingd", "keys": "image", "pixdim": [1.0, 1.0, 2.0], "mode": "bilinear"},
                {"_target_": "ScaleIntensityd", "keys": "image", "minv": 0.0, "maxv": 1.0, "channel_wise": True},
                {"_target_": "EnsureTyped", "keys": "image", "dtype": "$torch.float32"},
            ],
        },
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [32, 32, 16], "sw_batch_size": 1,
                    "overlap": 0.25},
        "postprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "Activationsd", "keys": "pred", "softmax": True},
                {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image",
                 "nearest_interp": False, "to_tensor": True},
                {"_target_": "AsDiscreted", "keys": "pred", "argmax": True, "dtype": "$torch.uint8"},
            ],
        },
    }  # fmt: skip


def _train_2d(infer: dict[str, Any]) -> dict[str, Any]:
    """train.json of the 2D smoke bundle in the model-zoo layout MONAI Label overrides.

    MONAI Label sets ``train#dataset#data``, ``validate#dataset#data``, ``train#trainer#max_epochs``,
    ``train#handlers`` (it prepends a CheckpointLoader of ``models/model.pt`` into ``@network``),
    ``device`` (as a string such as ``"cpu"``, hence ``torch.device(@device)`` below) and
    ``bundle_root``; the trainer saves ``models/model.pt``, which the server's inference reloads.
    """
    load = dict(infer["preprocessing"]["transforms"][0], keys=["image", "label"])
    return {
        "imports": ["$import torch"],
        "bundle_root": ".",
        "device": "$torch.device('cpu')",
        "amp": "$torch.device(@device).type == 'cuda'",
        "epochs": 1,
        "network_def": {"_target_": "scripts.smoke.network"},
        "network": "$@network_def.to(@device)",
        "loss": {"_target_": "DiceCELoss", "to_onehot_y": True, "softmax": True},
        "optimizer": {"_target_": "torch.optim.Adam", "params": "$@network.parameters()", "lr": 0.01},
        "train": {
            "preprocessing": {"_target_": "Compose", "transforms": [
                load,
                {"_target_": "ScaleIntensityd", "keys": "image"},
                {"_target_": "Resized", "keys": ["image", "label"], "spatial_size": [64, 64],
                 "mode": ["bilinear", "nearest"]},
                {"_target_": "EnsureTyped", "keys": ["image", "label"], "dtype": "$torch.float32"},
            ]},
            "dataset": {"_target_": "Dataset", "data": [], "transform": "@train#preprocessing"},
            "dataloader": {"_target_": "DataLoader", "dataset": "@train#dataset", "batch_size": 2, "shuffle": False,
                           "num_workers": 0},
            "inferer": {"_target_": "SimpleInferer"},
            "handlers": [
                {"_target_": "CheckpointSaver", "save_dir": "$@bundle_root + '/models'", "save_dict": {"model": "@network"},
                 "save_final": True, "final_filename": "model.pt"},
            ],
            "trainer": {"_target_": "SupervisedTrainer", "max_epochs": "@epochs", "device": "@device",
                        "train_data_loader": "@train#dataloader", "network": "@network", "loss_function": "@loss",
                        "optimizer": "@optimizer", "inferer": "@train#inferer", "train_handlers": "@train#handlers",
                        "amp": "@amp"},
        },
        "validate": {"dataset": {"_target_": "Dataset", "data": [], "transform": "@train#preprocessing"}},
        "run": ["$@train#trainer.run()"],
    }  # fmt: skip


def _write_bundle(root: Path, name: str, meta: dict[str, Any], infer: dict[str, Any], dims: int, in_ch: int,
                  seed: int, train: dict[str, Any] | None = None) -> Path:  # fmt: skip
    """Write configs, scripts/ and random-init weights; return the bundle folder."""
    bundle = root / name
    atomic_write_text(bundle / "configs" / "metadata.json", json.dumps(meta, indent=2))
    atomic_write_text(bundle / "configs" / "inference.json", json.dumps(infer, indent=2))
    if train is not None:
        atomic_write_text(bundle / "configs" / "train.json", json.dumps(train, indent=2))
    atomic_write_text(bundle / "scripts" / "__init__.py", f'"""Code of the {name} smoke bundle."""\n')
    atomic_write_text(bundle / "scripts" / "smoke.py", _SCRIPT.format(name=name, dims=dims, in_ch=in_ch))
    torch.manual_seed(seed)
    net = network(dims, in_ch)
    with atomic_path(bundle / "models" / "model.pt") as tmp:
        torch.save(net.state_dict(), tmp)
    return bundle


def make_bundle_2d(root: Path, seed: int = 0, train: bool = False) -> Path:
    """Write the 2D smoke bundle (1-channel PNG in, PNG mask out) under ``root``; return its folder.

    With ``train`` it also gets ``configs/train.json`` (MONAI Label then offers ``POST /train``).
    """
    meta = _metadata(NAME_2D, "US", 1, [64, 64], "lesion")
    infer = _inference_2d()
    return _write_bundle(root, NAME_2D, meta, infer, 2, 1, seed, _train_2d(infer) if train else None)


def make_bundle_3d(root: Path, seed: int = 0) -> Path:
    """Write the 3D smoke bundle (2-channel NIfTI in, NIfTI mask out) under ``root``; return its folder."""
    meta = _metadata(NAME_3D, "MR", 2, [32, 32, 16], "tumour")
    return _write_bundle(root, NAME_3D, meta, _inference_3d(), dims=3, in_ch=2, seed=seed)


def _blob(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A bright ellipsoid on a noisy background, in [0, 1]."""
    grids = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    centre = rng.uniform(-0.3, 0.3, len(shape))
    radius = sum(((g - c) / 0.45) ** 2 for g, c in zip(grids, centre, strict=True))
    return np.clip(0.3 + 0.6 * (radius < 1) + rng.normal(0, 0.05, shape), 0, 1)


def write_png(path: Path, width: int = 50, height: int = 37, seed: int = 0) -> Path:
    """Write a grey 8-bit PNG of ``width`` x ``height`` pixels (non-square, so axes cannot be swapped)."""
    image = (_blob((height, width), np.random.default_rng(seed)) * 255).astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(image, mode="L").save(tmp)
    return path


def write_png_studies(studies: Path, n: int = 4) -> list[Path]:
    """Write ``n`` PNG images with their final labels (``labels/final/<name>``, 0/1) for training."""
    images = []
    for i in range(n):
        image = write_png(studies / f"case{i:02d}.png", seed=100 + i)
        mask = (np.asarray(Image.open(image)) > 150).astype(np.uint8)
        with atomic_path(studies / "labels" / "final" / image.name) as tmp:
            Image.fromarray(mask, mode="L").save(tmp)
        images.append(image)
    return images


#: An LPS-like affine (x and y flipped, anisotropic, shifted), so orientation must be undone.
AFFINE_3D = np.array(
    [[-0.7, 0.0, 0.0, 90.0], [0.0, -0.8, 0.0, 110.5], [0.0, 0.0, 1.5, -40.0], [0.0, 0.0, 0.0, 1.0]]
)


def write_nifti(path: Path, shape: tuple[int, int, int] = (40, 36, 20), seed: int = 0) -> Path:
    """Write a 2-channel DCE NIfTI (X, Y, Z, 2) float32 with :data:`AFFINE_3D`."""
    rng = np.random.default_rng(seed)
    pre = _blob(shape, rng)
    post = np.clip(pre * 1.4, 0, 1)
    data = np.stack([pre, post], axis=-1).astype(np.float32)
    with atomic_path(path) as tmp:
        nib.save(nib.Nifti1Image(data, AFFINE_3D), tmp)
    return path
