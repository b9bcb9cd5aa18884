"""Weights, networks and preprocessed images for the inference benchmarks.

Backends are compared on real predicted masks, so the 2D networks need weights that segment:
either a user's ``model.pt`` (``--weights``) or a short run of the bundle's own trainer on
phantoms (cached in the work folder, keyed by everything that changes it). Images are prepared
with the bundle's own ``preprocessing`` from its ``inference.json``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sum_monai.bundle.locate import Bundle
from sum_monai.bundle.run import as_override_path, create_workflow, run_workflow

logger = logging.getLogger(__name__)

#: Phantom modality of each bundle.
MODALITY = {"breast_us_seg_2d": "us", "mammo_seg_2d": "mammo", "breast_mri_seg_3d": "mri"}


def phantoms(modality: str, n: int, folder: Path, seed: int, **settings: Any) -> Path:
    """A phantom folder of ``n`` cases, generated once and reused while its settings are unchanged."""
    from sum_monai.phantoms import generate, make_params

    manifest = folder / "phantom.json"
    if manifest.is_file():
        done = json.loads(manifest.read_text())
        wanted = json.loads(json.dumps(dataclasses.asdict(make_params(modality, **settings))))
        if (done.get("n"), done.get("seed"), done.get("modality"), done.get("params")) == (
            n,
            seed,
            modality,
            wanted,
        ):
            return folder
    generate(modality, n, folder, seed=seed, overwrite=True, overview=False, progress=False, **settings)
    return folder


def datalist_items(data: Path, out_dir: Path) -> list[dict]:
    """Every case of a phantom folder (all splits), as datalist items with absolute paths."""
    from sum_monai.workflows.data import prepare_datalist

    out_dir.mkdir(parents=True, exist_ok=True)
    path = prepare_datalist(data, out_dir, require=("training",))
    content = json.loads(path.read_text())
    base = path.parent
    items = []
    for split in ("training", "validation", "test"):
        for item in content.get(split, []):
            fixed = dict(item)
            for key in ("image", "label"):
                value = fixed.get(key)
                if isinstance(value, str):
                    fixed[key] = str((base / value).resolve())
                elif isinstance(value, list):
                    fixed[key] = [str((base / v).resolve()) for v in value]
            items.append(fixed)
    return items


def _fingerprint(bundle: Bundle, settings: dict) -> str:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for name in ("train.json", "inference.json"):
        digest.update(bundle.config(name).read_bytes())
    return digest.hexdigest()[:16]


def trained_weights(
    bundle: Bundle, workdir: Path, epochs: int, n_cases: int, overrides: dict | None = None
) -> Path:
    """``model.pt`` of a short run of the bundle's own trainer on phantoms (cached in ``workdir``).

    Args:
        bundle: a 2D bundle.
        workdir: benchmark work folder; the run goes to ``workdir/<bundle>/train``.
        epochs: training epochs.
        n_cases: phantom cases (mammography: patients).
        overrides: further config overrides, e.g. ``{"image_size": 256}``.
    """
    overrides = dict(overrides or {})
    settings = {"epochs": epochs, "n": n_cases, "seed": 0, **overrides}
    key = _fingerprint(bundle, settings)
    run = workdir / bundle.name / "train"
    stamp = run / "weights.json"
    model = run / "models" / "model.pt"
    if model.is_file() and stamp.is_file() and json.loads(stamp.read_text()).get("key") == key:
        return model
    data = phantoms(MODALITY[bundle.name], n_cases, workdir / bundle.name / "phantoms_train", seed=0)
    from sum_monai.workflows.data import prepare_datalist

    run.mkdir(parents=True, exist_ok=True)
    datalist = prepare_datalist(data, run, seed=0)
    logger.info(
        "training %s on %d phantom cases for %d epochs (weights for the backend comparison)",
        bundle.name,
        n_cases,
        epochs,
    )
    run_workflow(
        bundle, "train",
        {
            "data_list_file_path": as_override_path(datalist), "ckpt_dir": as_override_path(run / "models"),
            "output_dir": as_override_path(run / "eval"), "epochs": epochs, **overrides,
        },
    )  # fmt: skip
    stamp.write_text(json.dumps({"key": key, **settings}, indent=1))
    return model


def network(bundle: Bundle, ckpt: Path | None, overrides: dict | None = None) -> torch.nn.Module:
    """The bundle's ``network_def`` (from ``inference.json``) with the weights of ``ckpt``, in eval mode."""
    parser = create_workflow(bundle, "inference", overrides or {}).parser
    net = parser.get_parsed_content("network_def")
    if ckpt is not None:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        net.load_state_dict(
            state.get("model", state) if isinstance(state, dict) and "model" in state else state
        )
    return net.eval()


def preprocess(bundle: Bundle, items: list[dict], image_size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Images through the bundle's inference ``preprocessing``; labels through its validation one.

    Returns:
        ``(images, labels)``: ``(N, C, S, S)`` float32 and ``(N, S, S)`` int64 (``None`` without labels).
    """
    overrides = {"image_size": image_size}
    pre = create_workflow(bundle, "inference", overrides).parser.get_parsed_content("preprocessing")
    images = np.stack([np.asarray(pre({"image": it["image"]})["image"], dtype=np.float32) for it in items])
    if not all(it.get("label") for it in items):
        return images, None
    val = create_workflow(bundle, "train", overrides).parser.get_parsed_content("validate#preprocessing")
    labels = np.stack(
        # lesion_class too: the mammography labels are binary masks times the case's class (label_transforms)
        [np.asarray(val({k: it[k] for k in ("image", "label", "lesion_class") if k in it})["label"])[0] for it in items]
    )
    return images, labels.astype(np.int64)
