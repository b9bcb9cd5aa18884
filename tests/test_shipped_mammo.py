"""The weights shipped in bundles/mammo_seg_2d: the mini-MIAS cross-validation ensemble (issue 9).

``metadata.json``'s ``eval_metrics`` quote ``sum-monai cv`` (out-of-fold FROC, film class, Dice
against circles, mean and sd over folds); these tests check the fold models are there, under the
model zoo's size limit, load as tensors only, agree with the TorchScript export, that the recorded
figures are consistent with each other, and that the ensemble reads an original PGM film and
writes its mask on the film's own grid.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sum_monai.bundle.bundle_scripts.ensemble import member_files
from sum_monai.bundle.locate import Bundle
from sum_monai.bundle.weights import load_checked_state_dict, network_from_bundle
from sum_monai.cli import main

BUNDLE = Bundle.find("mammo_seg_2d")
MODELS = BUNDLE.root / "models"


def _member_paths() -> list[Path]:
    return [MODELS / "model.pt", *map(Path, member_files(str(MODELS / "model.pt")))]


def test_fold_models_are_shipped_under_the_zoo_limit_and_load_strictly() -> None:
    paths = _member_paths()
    folds = BUNDLE.metadata["eval_metrics"]["folds_scored"]
    assert len(paths) == len(folds) >= 3, (paths, folds)
    for path in [*paths, MODELS / "model.ts"]:
        assert path.stat().st_size < 25 * 2**20, path
    for path in paths:
        net = network_from_bundle(BUNDLE).eval()
        net.load_state_dict(load_checked_state_dict(BUNDLE, path, network=net), strict=True)


def test_model_pt_matches_its_torchscript_export() -> None:
    net = network_from_bundle(BUNDLE).eval()
    net.load_state_dict(load_checked_state_dict(BUNDLE, network=net), strict=True)
    scripted = torch.jit.load(str(MODELS / "model.ts"))
    x = torch.rand(1, 1, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x), atol=1e-4, rtol=1e-4)


def test_recorded_figures_are_out_of_fold_cad_figures() -> None:
    em = BUNDLE.metadata["eval_metrics"]
    assert "cross-validation" in em["source"] and em["cases"] >= 200
    figures = em["figures"]
    for key in ("sensitivity", "fp_per_film", "balanced_accuracy", "normal_with_lesion"):
        assert figures[key]["mean"] >= 0 and figures[key]["sd"] >= 0, key
    # the FROC rows are monotone: a higher threshold never finds more lesions nor marks more FPs
    rows = sorted(em["froc"], key=lambda r: r["threshold"])
    assert all(a["sensitivity"] >= b["sensitivity"] - 1e-9 for a, b in itertools.pairwise(rows))
    assert all(a["fp_per_film"] >= b["fp_per_film"] - 1e-9 for a, b in itertools.pairwise(rows))
    confusion = np.array(em["film_class_confusion"])
    assert confusion.shape == (3, 3) and confusion.sum() == em["cases"]
    threshold = json.loads((BUNDLE.root / "configs" / "inference.json").read_text())["lesion_threshold"]
    assert threshold == em["post_processing"]["threshold"]


def test_the_ensemble_predicts_an_original_pgm_film_on_its_own_grid(
    mias: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from monai.transforms import LoadImage

    films = tmp_path / "films"
    films.mkdir()
    (films / "mdb023.pgm").symlink_to(mias / "mdb023.pgm")  # a malignant mass
    out = tmp_path / "pred"
    assert main(["predict", "--bundle", str(BUNDLE.root), "--input", str(films), "--output", str(out)]) == 0
    masks = sorted(out.rglob("*_seg.*"))
    assert len(masks) == 1, sorted(out.rglob("*"))
    mask = np.asarray(LoadImage(image_only=True)(str(masks[0]))).squeeze()
    assert mask.shape == (1024, 1024)
    assert set(np.unique(mask).tolist()) <= {0, 1, 2}
