"""The phantom-trained weights shipped in bundles/breast_mri_seg_3d (issue 14): the zoo's file rules.

(`sum-monai bundle verify` on every bundle is tests/test_bundles.py::test_offline_verification.)

``models/model.pt`` and ``models/model.ts`` are present and small, load as tensors only into the
configured network, agree with each other, the TorchScript file carries the bundle's own
metadata, and ``eval_metrics`` say plainly that the figures are phantom figures.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import torch

from sum_monai.bundle.locate import Bundle
from sum_monai.bundle.weights import load_checked_state_dict, network_from_bundle

BUNDLE = Bundle.find("breast_mri_seg_3d")
MODELS = BUNDLE.root / "models"
#: the model zoo's size limit for a committed file
ZOO_LIMIT = 25 * 2**20


def test_zoo_files_are_present_and_small() -> None:
    for part in ("LICENSE", "configs/metadata.json", "configs/inference.json", "docs/README.md", "models/model.pt", "models/model.ts"):
        assert (BUNDLE.root / part).is_file(), part
    sizes = {p.name: p.stat().st_size for p in (MODELS / "model.pt", MODELS / "model.ts")}
    assert all(s < ZOO_LIMIT / 2 for s in sizes.values()), sizes


def test_eval_metrics_are_phantom_figures_from_a_held_out_split() -> None:
    meta = BUNDLE.metadata
    assert meta["version"] in meta["changelog"] and meta["version"] >= "0.2.0"
    phantom = meta["eval_metrics"]["phantom_test_split"]
    assert phantom["n"] == 7 and 0.0 <= phantom["mean_dice"] <= 1.0
    assert "phantom" in phantom["data"] and "no real patient" in meta["intended_use"]
    card = (BUNDLE.root / "docs" / "README.md").read_text()
    assert "have seen no real patient" in card
    assert "| baseline" in card and "| network" in card  # the comparison table


def test_weights_load_strictly_and_match_the_torchscript_export() -> None:
    net = network_from_bundle(BUNDLE).eval()
    net.load_state_dict(load_checked_state_dict(BUNDLE, network=net), strict=True)
    extra = {"metadata.json": ""}
    scripted = torch.jit.load(str(MODELS / "model.ts"), _extra_files=extra)
    assert json.loads(extra["metadata.json"])["version"] == BUNDLE.version
    x = torch.rand(1, 2, 32, 32, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x), atol=1e-5, rtol=1e-5)


def test_monai_alone_writes_one_mask_per_case(tmp_path) -> None:
    """`python -m monai.bundle run` over two DICOM case folders (pre/ + post1/ each) wrote one
    post1_seg.nii.gz: the second case overwrote the first. Each case now has its own mask, for
    DICOM case folders and for nnU-Net NIfTI pairs (<case>_0000 / _0001) alike, here in one folder."""
    import subprocess
    import sys

    import nibabel as nib

    from sum_monai.phantoms import generate

    inputs = tmp_path / "inputs"
    generate("mri", 2, tmp_path / "dcm", seed=1, progress=False, overview=False, format="dicom", size=(48, 40, 16))
    generate("mri", 2, tmp_path / "nii", seed=2, progress=False, overview=False, format="nifti", size=(48, 40, 16))
    shutil.copytree(tmp_path / "dcm" / "dicom", inputs)  # breast_0001/, breast_0002/ (pre/ + post1/ each)
    for f in (tmp_path / "nii" / "imagesTr").iterdir():  # breast_0001_0000.nii.gz ... as cases nii_0001, nii_0002
        shutil.copy(f, inputs / f.name.replace("breast_", "nii_"))
    out = tmp_path / "out"
    subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json",
         "--bundle_root", ".", "--dataset_dir", str(inputs), "--output_dir", str(out), "--roi_size", "[32,32,16]"],
        cwd=BUNDLE.root, check=True, capture_output=True, text=True,
    )  # fmt: skip
    masks = sorted(p.name for p in out.rglob("*_seg.nii.gz"))
    assert masks == ["breast_0001_seg.nii.gz", "breast_0002_seg.nii.gz", "nii_0001_seg.nii.gz", "nii_0002_seg.nii.gz"]
    shapes = {np.asarray(nib.load(next(out.rglob(m))).dataobj).shape for m in masks}
    assert shapes == {(48, 40, 16)}
