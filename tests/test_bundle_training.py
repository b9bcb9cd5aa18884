"""The mammography and MRI bundles train, evaluate and export end to end on small phantoms.

(The ultrasound bundle, which the demo trains, is covered in depth by test_training.py.)
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from sum_monai.bundle.locate import Bundle
from sum_monai.io.read import read_image
from sum_monai.workflows.evaluate import evaluate
from sum_monai.workflows.train import train


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from sum_monai.phantoms import generate

    root = tmp_path_factory.mktemp("phantoms")
    generate("mammo", 6, root / "mammo", seed=1, size=(192, 128), progress=False)
    generate("mri", 5, root / "mri", seed=1, progress=False)
    return {"mammo": root / "mammo", "mri": root / "mri"}


def _check_run(result: object, bundle: str) -> None:
    state = torch.load(result.model_pt, weights_only=True)
    net = Bundle.find(bundle)
    assert state and result.model_ts.is_file() and result.archive.is_file()
    assert Bundle(result.trained_bundle).metadata["version"] == net.version


def test_mammography_bundle(phantoms: dict[str, Path], tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    result = train(
        "mammo_seg_2d", data=phantoms["mammo"], output=tmp_path / "run", epochs=2, tracking_uri=uri,
        overrides={"image_size": 64, "batch_size": 2, "val_interval": 1},
    )  # fmt: skip
    _check_run(result, "mammo_seg_2d")
    ev = evaluate("mammo_seg_2d", run=result.run_dir, split="all", tracking_uri=uri)
    with ev.per_case_csv.open() as f:
        rows = list(csv.DictReader(f))
    assert rows and {"dice_benign", "dice_malignant"} <= set(rows[0]), "per-class metrics for mammography"
    # predictions are 3-class label maps on each DICOM's own pixel grid (rows x cols)
    import pydicom
    from PIL import Image

    preds = sorted((ev.output_dir / "predictions").rglob("*_seg.png"))
    assert len(preds) == len(rows)
    for pred in preds:
        dcm = next(phantoms["mammo"].rglob(pred.name.replace("_seg.png", ".dcm")))
        ds = pydicom.dcmread(dcm, stop_before_pixels=True)
        mask = np.asarray(Image.open(pred))
        assert mask.shape == (ds.Rows, ds.Columns)
        assert set(np.unique(mask)) <= {0, 1, 2}


def test_mri_bundle_on_dicom_series(phantoms: dict[str, Path], tmp_path: Path) -> None:
    """The Decathlon-layout phantom has DICOM series per channel; predictions keep their geometry."""
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    result = train(
        "breast_mri_seg_3d", data=phantoms["mri"], output=tmp_path / "run", epochs=2, tracking_uri=uri,
        overrides={"roi_size": [32, 32, 16], "pixdim": [2.0, 2.0, 4.0], "val_interval": 1, "num_samples": 1},
    )  # fmt: skip
    _check_run(result, "breast_mri_seg_3d")
    ev = evaluate("breast_mri_seg_3d", run=result.run_dir, split="test", tracking_uri=uri)
    preds = sorted((ev.output_dir / "predictions").rglob("*_seg.nii.gz"))
    assert preds
    for pred in preds:
        case = pred.parent.name
        source = read_image(phantoms["mri"] / "dicom" / case / "pre")
        out = read_image(pred)
        assert out.spatial_shape == source.spatial_shape
        assert np.allclose(out.affine, source.affine, atol=1e-3)
        assert set(np.unique(out.numpy())) <= {0, 1}
