"""The trained weights shipped in bundles/breast_us_seg_2d (issue: real data, shipped weights).

The model card and ``metadata.json``'s ``eval_metrics`` quote ``sum-monai cv`` (out-of-fold figures
of the 5-fold cross-validation on the BUSI pool, mean and sd over folds; the shipped ensemble has
seen every pool image, so no split of the pool can measure it). These tests check the fold models
are there, small, load as tensors only, agree with their TorchScript export, that inference is
the recorded ensemble and post-processing, and that it runs on BUSI files with their original
bytes (RGB images, RGBA and multi-lesion masks).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sum_monai.bundle.locate import Bundle
from sum_monai.bundle.weights import load_checked_state_dict, network_from_bundle
from sum_monai.cli import main

BUNDLE = Bundle.find("breast_us_seg_2d")
MODELS = BUNDLE.root / "models"


def test_weights_are_shipped_small_and_described() -> None:
    sizes = {p.name: p.stat().st_size for p in (MODELS / "model.pt", MODELS / "model.ts")}
    assert sum(sizes.values()) < 20 * 2**20, sizes
    meta = BUNDLE.metadata
    em = meta["eval_metrics"]
    assert "cross-validation" in em["source"] and em["cases"] == 575 and len(em["folds_scored"]) >= 4
    assert meta["network_data_format"]["inputs"]["image"]["spatial_shape"] == [192, 192]


def test_recorded_figures_are_out_of_fold_and_the_shipped_post_processing_is_the_chosen_one() -> None:
    em = BUNDLE.metadata["eval_metrics"]
    figures = em["figures"]
    assert 0.5 < figures["dice"]["mean"] < 1 and figures["dice"]["sd"] >= 0
    assert 0 <= figures["normal_fp"]["mean"] <= 1
    assert next(iter(em["levers"])) == "argmax"  # every lever is measured against the plain argmax
    config = json.loads((BUNDLE.root / "configs" / "inference.json").read_text())
    chosen = em["post_processing"]
    assert config["lesion_threshold"] == chosen["threshold"]
    assert config["min_lesion_fraction"] == chosen["min_fraction"]
    assert config["mirror_axes"] == ([0] if chosen["mirror"] else [])


def test_the_recorded_folds_are_those_the_busi_pool_gives_on_any_machine(busi_pool: Path, tmp_path: Path) -> None:
    """``cv --init breast_us_seg_2d`` on another machine: its datalist (another id salt) has the shipped folds."""
    from sum_monai.datalists.build import build_datalist
    from sum_monai.workflows.cv import folds_fingerprint

    folds = tmp_path / "folds.json"  # as `sum-monai datalist busi POOL --folds 5 --seed 0` (image checks skipped: not the point)
    datalist = build_datalist("busi", busi_pool, folds, seed=0, test_frac=0.0, folds=5, validate=False, progress=False)
    assert folds_fingerprint(datalist, folds) == BUNDLE.metadata["eval_metrics"]["folds_fingerprint"]


def test_weights_load_strictly_and_match_the_torchscript_export() -> None:
    net = network_from_bundle(BUNDLE).eval()
    net.load_state_dict(load_checked_state_dict(BUNDLE, network=net), strict=True)
    scripted = torch.jit.load(str(MODELS / "model.ts"))
    x = torch.rand(2, 1, 192, 192, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x), atol=1e-5, rtol=1e-5)


def _members() -> list[torch.nn.Module]:
    """The shipped ensemble: model.pt (the configured network) and every fold*.pt beside it."""
    from sum_monai.bundle.bundle_scripts.ensemble import member_files

    nets = []
    for path in [MODELS / "model.pt", *map(Path, member_files(str(MODELS / "model.pt")))]:
        assert path.stat().st_size < 25 * 2**20, path  # the model zoo's limit per file
        net = network_from_bundle(BUNDLE).eval()
        net.load_state_dict(load_checked_state_dict(BUNDLE, path, network=net), strict=True)
        nets.append(net)
    return nets


def test_inference_and_evaluation_average_the_fold_models_and_their_mirror_passes() -> None:
    """The inferer of inference.json and evaluate.json: mean softmax over members of the mirror-averaged logits."""
    from sum_monai.bundle.run import create_workflow

    members = _members()
    x = torch.rand(1, 1, 192, 192, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        mirrored = [(n(x) + torch.flip(n(torch.flip(x, dims=(2,))), dims=(2,))) / 2 for n in members]
        expected = torch.stack([torch.softmax(m, 1) for m in mirrored]).mean(0)
        for workflow, key in (("inference", "inferer"), ("evaluate", "validate#inferer")):
            parser = create_workflow(BUNDLE, workflow).parser
            inferer = parser.get_parsed_content(key)
            assert type(inferer).__name__ == "EnsembleInferer" and len(inferer.weights) == len(members) - 1, workflow
            assert inferer.inferer.spatial_axes == (0,), workflow
            network = parser.get_parsed_content("network")
            network.load_state_dict(members[0].state_dict())
            got = torch.softmax(inferer(x, network.eval()), 1)
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
        assert not torch.allclose(members[0](x), mirrored[0], atol=1e-3)  # the mirror pass changes the output


def test_inference_keeps_the_confident_lesions_over_the_configured_share_of_the_image() -> None:
    from sum_monai.bundle.run import create_workflow

    parser = create_workflow(BUNDLE, "inference").parser
    fraction, threshold = parser["min_lesion_fraction"], parser["lesion_threshold"]
    assert 0 <= fraction < 0.01 and 0.5 <= threshold < 1
    post = parser.get_parsed_content("postprocessing")
    keep = next(t for t in post.transforms if type(t).__name__ == "KeepConfidentLesionsd")
    probs = torch.zeros(2, 100, 100)
    probs[0] = 1
    small = max(int(fraction * 10_000) - 1, 1)  # pixels, just under the share (one pixel when there is none)
    probs[:, 10, 10 : 10 + small] = torch.tensor([0.0, 1.0])[:, None]
    probs[:, 50:60, 50:60] = torch.tensor([0.0, 1.0])[:, None, None]  # 100 pixels, confident
    if threshold > 0.5:  # an argmax lesion less confident than the operating point: dropped
        weak = (0.5 + threshold) / 2
        probs[:, 80:90, 80:90] = torch.tensor([1 - weak, weak])[:, None, None]
    out = keep({"pred": probs})["pred"]
    small_kept = fraction == 0
    assert int(out.sum()) == 100 + small * small_kept
    assert int(out[0, 10, 10]) == int(small_kept) and int(out[0, 55, 55]) == 1 and int(out[0, 85, 85]) == 0


def _monai_metrics(folder: Path) -> dict[str, float]:
    """``metrics.csv`` of MONAI's ``MetricsSaver`` (``name,value`` per line)."""
    rows = [line.rsplit(",", 1) for line in (folder / "metrics.csv").read_text().splitlines() if line.strip()]
    return {k: float(v) for k, v in rows}


def test_evaluate_on_original_busi_bytes_and_monai_alone_reproduces_it(
    busi_fixtures: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """`sum-monai evaluate` on BUSI files with their original bytes (RGB images, merged masks), then
    `python -m monai.bundle run` on train.json + evaluate.json prints the same figures, including the
    share of lesion-free images with a predicted lesion (the bundle's ``val_normal_marked``,
    ``scripts.metrics.LesionOnNormalMetric``)."""
    import subprocess
    import sys

    out = tmp_path / "eval"
    assert main(["evaluate", "--bundle", str(BUNDLE.root), "--data", str(busi_fixtures), "--split", "all",
                 "--output", str(out), "--tracking-uri", f"sqlite:///{tmp_path / 'mlruns.db'}"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    for row in ("all", "benign", "malignant", "normal", "normal images with any predicted lesion"):
        assert row in printed
    summary = json.loads((out / "summary.json").read_text())["summary"]
    assert summary["benign"]["n"] == 3 and summary["malignant"]["n"] == 2 and summary["normal"]["n"] == 1
    # the shipped model finds the lesions of these held-out originals
    assert summary["all"]["dice"] > 0.5, summary["all"]
    ours = _monai_metrics(out)
    share = summary["normal_images"]["share_with_predicted_lesion"]
    assert summary["normal_images"]["n"] == 1 and ours["val_normal_marked"] == pytest.approx(share)
    alone = tmp_path / "monai"
    done = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "--config_file", "['configs/train.json','configs/evaluate.json']",
         "--bundle_root", ".", "--data_list_file_path", str(out / "datalist_all.json"), "--eval_split", "all",
         "--output_dir", str(alone)],
        cwd=BUNDLE.root, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = _monai_metrics(alone)
    assert theirs["val_normal_marked"] == pytest.approx(share)
    assert theirs["val_mean_dice"] == pytest.approx(ours["val_mean_dice"], abs=1e-6)
    assert theirs["val_mean_dice"] == pytest.approx(summary["all"]["dice"], abs=1e-3)
