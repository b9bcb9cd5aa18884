"""``sum-monai cv`` end to end on tiny phantoms: folds trained and grouped in MLflow, out-of-fold report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import pytest

from sum_monai.cli import main

SMALL = ["--set", "image_size=32", "--set", "batch_size=4"]


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A 2-fold, 1-epoch CV of the ultrasound bundle on 12 phantoms, and what the command printed."""
    from sum_monai.phantoms import generate

    root = tmp_path_factory.mktemp("cv")
    generate("us", 12, root / "us", seed=5, size=(48, 48), progress=False)
    folds = root / "folds.json"
    assert main(["datalist", "busi", str(root / "us"), "--out", str(folds), "--folds", "2", "--no-progress"]) == 0
    uri = f"sqlite:///{root / 'mlruns.db'}"
    out = root / "cv"
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        status = main(["cv", "--bundle", "breast_us_seg_2d", "--data", str(folds), "--output", str(out),
                       "--epochs", "1", "--tracking-uri", uri, *SMALL])  # fmt: skip
    assert status == 0
    return out, uri, buffer.getvalue()


def test_every_fold_is_trained_on_the_other_folds(cv_run: tuple[Path, str, str]) -> None:
    out, _, _ = cv_run
    for k in (0, 1):
        fold = json.loads((out / f"fold{k}" / "datalist.json").read_text())
        assert {c["fold"] for c in fold["validation"]} == {k} and {c["fold"] for c in fold["training"]} == {1 - k}
        run = json.loads((out / f"fold{k}" / "run.json").read_text())
        assert run["status"] == "finished"
        trained = json.loads((out / f"fold{k}" / "bundle" / "breast_us_seg_2d" / "configs" / "train.json").read_text())
        assert trained["val_interval"] == 1  # one validation, at the last epoch: no epoch picked on the fold


def test_mlflow_groups_the_folds_under_a_parent_run_with_mean_and_sd(cv_run: tuple[Path, str, str]) -> None:
    out, uri, _ = cv_run
    client = mlflow.MlflowClient(uri)
    parent_id = json.loads((out / "cv.json").read_text())["parent_run_id"]
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["workflow"] == "cv"
    assert "cv_dice_mean" in parent.data.metrics and "cv_dice_sd" in parent.data.metrics
    experiment = client.get_experiment_by_name("breast_us_seg_2d")
    children = client.search_runs([experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'")
    assert sorted(r.data.tags["cv_fold"] for r in children) == ["0", "1"]
    artifacts = {a.path for a in client.list_artifacts(parent_id)}
    assert {"cv_report.json", "cv_report.md", "trade_off.png"} <= artifacts


def test_report_prints_mean_and_sd_per_lever_from_out_of_fold_cases(cv_run: tuple[Path, str, str]) -> None:
    out, _, printed = cv_run
    report = json.loads((out / "cv_report.json").read_text())
    assert report["folds"] == [0, 1] and report["cases"] == 12
    assert len(list((out / "oof").glob("*.npz"))) == 12
    names = [r["name"] for r in report["rows"]]
    assert names[0] == "argmax" and names[1].startswith("+ mirror pass (") and names[2].startswith("+ islands < 0.2 % dropped (")
    assert "nested CV" in names[3] and set(report["chosen"]) >= {"mirror", "min_fraction", "threshold"}
    last = report["rows"][-1]
    assert set(last["thresholds"]) == {"0", "1"}
    for row in report["rows"]:
        per_fold = [v for v in row["per_fold"]["dice"] if v is not None]
        assert len(row["per_fold"]["dice"]) == 2 and all(0.0 <= v <= 1.0 for v in per_fold)
    assert "lesion Dice" in printed and "+-" in printed


def test_rerun_skips_finished_folds_and_refuses_another_recipe(cv_run: tuple[Path, str, str], tmp_path: Path) -> None:
    out, uri, _ = cv_run
    before = (out / "fold0" / "models" / "model.pt").stat().st_mtime_ns
    data = json.loads((out / "cv.json").read_text())["datalist"]
    assert main(["cv", "--bundle", "breast_us_seg_2d", "--data", data, "--output", str(out), "--epochs", "1",
                 "--tracking-uri", uri, *SMALL]) == 0  # fmt: skip
    assert (out / "fold0" / "models" / "model.pt").stat().st_mtime_ns == before
    assert main(["cv", "--bundle", "breast_us_seg_2d", "--data", data, "--output", str(out), "--epochs", "2",
                 "--tracking-uri", uri, *SMALL]) == 2  # fmt: skip


def test_package_ships_the_folds_as_an_ensemble_with_the_cv_choices(cv_run: tuple[Path, str, str], tmp_path: Path) -> None:
    import torch

    from sum_monai.bundle.from_cv import package_cv
    from sum_monai.bundle.locate import Bundle
    from sum_monai.bundle.run import create_workflow

    out, _, _ = cv_run
    packaged = package_cv("breast_us_seg_2d", out, tmp_path / "bundle", version="9.9.9", changelog="test")
    models = packaged.root / "models"
    assert sorted(p.name for p in models.iterdir()) == ["fold1.pt", "model.pt", "model.ts"]
    listing = (packaged.root / "large_files.yml").read_text()
    assert "fold1.pt" in listing  # the zoo list follows the new weights
    assert "/bundles/breast_us_seg_2d/models/fold1.pt" in listing and "/bundles/bundle/" not in listing  # the source's name
    from sum_monai.bundle.zoo import file_problems

    assert file_problems(packaged) == []
    assert models.joinpath("model.pt").read_bytes() == (out / "fold0" / "models" / "model.pt").read_bytes()
    report = json.loads((out / "cv_report.json").read_text())
    parser = create_workflow(Bundle(packaged.root), "inference").parser
    assert parser["lesion_threshold"] == report["chosen"]["threshold"]
    assert parser["mirror_axes"] == ([0] if report["chosen"]["mirror"] else [])
    assert parser["image_size"] == 32  # the CV's recipe is baked in
    meta = packaged.metadata
    assert meta["version"] == "9.9.9" and meta["eval_metrics"]["cases"] == 12
    assert set(meta["eval_metrics"]["figures"]) >= {"dice", "normal_fp"}
    extra = {"metadata.json": ""}
    torch.jit.load(str(models / "model.ts"), _extra_files=extra)
    assert json.loads(extra["metadata.json"])["version"] == "9.9.9"  # TorchScript carries the bundle's metadata
    # the ensemble inferer averages the softmax of both fold models
    inferer = parser.get_parsed_content("inferer")
    net = parser.get_parsed_content("network_def").eval()
    net.load_state_dict(torch.load(models / "model.pt", weights_only=True))
    other = parser.get_parsed_content("network_def").eval()
    other.load_state_dict(torch.load(models / "fold1.pt", weights_only=True))
    x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        tta = parser.get_parsed_content("inferer#inferer")
        expected = (torch.softmax(tta(x, net), 1) + torch.softmax(tta(x, other), 1)) / 2
        torch.testing.assert_close(torch.softmax(inferer(x, net), 1), expected, atol=1e-5, rtol=1e-4)
        # a long-lived inferer (MONAI Label parses it once) follows the folder: fold1.pt moved away -> one network
        (models / "fold1.pt").rename(tmp_path / "fold1.pt")
        torch.testing.assert_close(torch.softmax(inferer(x, net), 1), torch.softmax(tta(x, net), 1), atol=1e-6, rtol=1e-5)
        (tmp_path / "fold1.pt").rename(models / "fold1.pt")
        torch.testing.assert_close(torch.softmax(inferer(x, net), 1), expected, atol=1e-5, rtol=1e-4)


def test_folds_fingerprint_names_images_and_folds_not_the_salted_case_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another machine (another id salt, another folder for the datalist) gets the same fingerprint; other folds do not."""
    from sum_monai.phantoms import generate
    from sum_monai.workflows.cv import folds_fingerprint

    generate("us", 12, tmp_path / "us", seed=5, size=(48, 48), progress=False)
    prints, ids = [], []
    for salt, out in (("machine-a", tmp_path / "folds.json"), ("machine-b", tmp_path / "elsewhere" / "folds.json")):
        monkeypatch.setenv("SUM_MONAI_ID_SALT", salt)
        assert main(["datalist", "busi", str(tmp_path / "us"), "--out", str(out), "--folds", "2", "--no-progress"]) == 0
        datalist = json.loads(out.read_text())
        prints.append(folds_fingerprint(datalist, out))
        ids.append(sorted(item["case_id"] for item in datalist["training"] + datalist["validation"]))
    assert ids[0] != ids[1] and prints[0] == prints[1]
    moved = json.loads((tmp_path / "folds.json").read_text())
    for item in moved["training"] + moved["validation"]:
        item["fold"] = 1 - item["fold"]
    assert folds_fingerprint(moved, tmp_path / "folds.json") != prints[0]


def test_init_starts_each_fold_from_its_own_member_of_a_packaged_cv(cv_run: tuple[Path, str, str], tmp_path: Path) -> None:
    """``--init BUNDLE``: fold k warm-starts from the member trained for fold k (learning rate 0 keeps it unchanged)."""
    import torch

    from sum_monai.bundle.from_cv import cv_eval_metrics, package_cv
    from sum_monai.workflows.cv import CVRecord

    out, uri, _ = cv_run
    packaged = package_cv("breast_us_seg_2d", out, tmp_path / "bundle", version="9.9.9", changelog="test")
    data = json.loads((out / "cv.json").read_text())["datalist"]
    assert len(packaged.metadata["eval_metrics"]["folds_fingerprint"]) == 16
    restart = tmp_path / "restart"
    args = ["cv", "--bundle", "breast_us_seg_2d", "--data", data, "--epochs", "1", "--tracking-uri", uri, *SMALL]
    assert main([*args, "--output", str(restart), "--init", str(packaged.root), "--set", "learning_rate=0"]) == 0
    record = CVRecord.load(restart)
    assert record.initial_weights == str(packaged.root.resolve()) and sorted(record.start_md5) == ["0", "1"]
    metrics = cv_eval_metrics(json.loads((out / "cv_report.json").read_text()), record)
    assert "fold-k member of bundle version 9.9.9 (the same folds)" in metrics["warm_start"]
    for k, member in ((0, "model.pt"), (1, "fold1.pt")):
        start = torch.load(packaged.root / "models" / member, weights_only=True)
        trained = torch.load(restart / f"fold{k}" / "models" / "model.pt", weights_only=True)
        weights = [n for n in start if n.endswith(".weight")]
        assert weights and all(torch.equal(start[n], trained[n]) for n in weights)
    first = torch.load(packaged.root / "models" / "model.pt", weights_only=True)
    assert not all(torch.equal(first[n], start[n]) for n in weights)  # the two members differ: the pairing is real
    # a {fold} path inside the first CV is checked against that CV's folds, and labelled by it
    by_path = tmp_path / "by_path"
    assert main([*args, "--output", str(by_path), "--init", str(out / "fold{fold}" / "models" / "model.pt"),
                 "--folds", "0"]) == 0  # fmt: skip
    assert CVRecord.load(by_path).warm_start.startswith(f"fold k warm-started from fold k of the cross-validation {out.name}")
    # refused before anything is written: another start in the same folder, other folds, a missing member
    assert main([*args, "--output", str(restart), "--set", "learning_rate=0"]) == 2
    meta = packaged.root / "configs" / "metadata.json"
    kept = meta.read_text()
    other = json.loads(kept)
    other["eval_metrics"]["folds_fingerprint"] = "0" * 16
    meta.write_text(json.dumps(other))
    assert main([*args, "--output", str(tmp_path / "folds"), "--init", str(packaged.root)]) == 2
    meta.write_text(kept)
    (packaged.root / "models" / "fold1.pt").unlink()
    assert main([*args, "--output", str(tmp_path / "missing"), "--init", str(packaged.root)]) == 2
    assert not (tmp_path / "folds").exists() and not (tmp_path / "missing").exists()
    # a fold that restarts from scratch must start from the same weights as before (md5 kept in cv.json)
    shutil.rmtree(restart / "fold1")
    torch.save({n: v + 1 for n, v in start.items()}, packaged.root / "models" / "fold1.pt")
    assert main([*args, "--output", str(restart), "--init", str(packaged.root), "--set", "learning_rate=0"]) == 2


def test_members_rescores_a_packaged_bundle_out_of_fold_and_averages_snapshots(
    cv_run: tuple[Path, str, str], tmp_path: Path
) -> None:
    """``--members``: member k of a packaged bundle predicts fold k exactly as fold k's run did; with two
    bundles, fold k gets the mean of their fold-k members; nothing else is scored or trained."""
    import numpy as np
    import torch

    from sum_monai.bundle.from_cv import package_cv

    out, uri, _ = cv_run
    data = json.loads((out / "cv.json").read_text())["datalist"]
    first = package_cv("breast_us_seg_2d", out, tmp_path / "a" / "breast_us_seg_2d", version="9.9.9", changelog="t")
    second = tmp_path / "b" / "breast_us_seg_2d"
    shutil.copytree(first.root, second)
    for name in ("model.pt", "fold1.pt"):  # another snapshot of the same folds
        state = torch.load(second / "models" / name, weights_only=True)
        torch.save({n: v * 0.5 if n.endswith("conv.weight") else v for n, v in state.items()}, second / "models" / name)
    args = ["cv", "--bundle", "breast_us_seg_2d", "--data", data, "--tracking-uri", uri]

    def oof(folder: Path) -> dict[str, np.ndarray]:
        return {p.stem: np.load(p)["plain"].astype(int) for p in sorted((folder / "oof").glob("*.npz"))}

    assert main([*args, "--members", str(first.root), "--output", str(tmp_path / "one")]) == 0
    trained = oof(out)
    assert oof(tmp_path / "one").keys() == trained.keys() and len(trained) == 12
    assert all(np.array_equal(oof(tmp_path / "one")[c], trained[c]) for c in trained)  # fold k by member k
    assert json.loads((tmp_path / "one" / "cv_report.json").read_text())["rows"] == json.loads(
        (out / "cv_report.json").read_text()
    )["rows"]  # the same figures from the packaged members
    assert main([*args, "--members", str(second), "--output", str(tmp_path / "two")]) == 0
    assert main([*args, "--members", str(first.root), str(second), "--output", str(tmp_path / "both")]) == 0
    one, two, both = oof(tmp_path / "one"), oof(tmp_path / "two"), oof(tmp_path / "both")
    assert any(not np.array_equal(one[c], two[c]) for c in one)
    assert all(np.abs(both[c] - (one[c] + two[c]) / 2).max() <= 1 for c in one)  # uint8 rounding
    assert not list((tmp_path / "both").glob("fold*"))  # nothing trained
    # refused before anything is written: another pool's bundle, --members with --package
    meta = second / "configs" / "metadata.json"
    other = json.loads(meta.read_text())
    other["eval_metrics"]["folds_fingerprint"] = "0" * 16
    meta.write_text(json.dumps(other))
    assert main([*args, "--members", str(second), "--output", str(tmp_path / "refused")]) == 2
    assert main([*args, "--members", "--package", str(tmp_path / "p"), "--output", str(tmp_path / "p2")]) == 2
    assert not (tmp_path / "refused").exists() and not (tmp_path / "p2").exists()
