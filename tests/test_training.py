"""Training, evaluation and tracking of real bundle runs on small phantoms.

The runs are tiny (64x64 images, a few epochs) so the numbers checked are the plumbing: what is
written, what MLflow holds, what a kill and a resume leave behind. Accuracy is measured by the
demo and the model cards, never by timed or long tests.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from sum_monai.bundle.locate import Bundle
from sum_monai.workflows.evaluate import evaluate
from sum_monai.workflows.train import train

SMALL_US = {"image_size": 64, "batch_size": 4, "val_interval": 1}


@pytest.fixture(scope="module")
def us_phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sum_monai.phantoms import generate

    out = tmp_path_factory.mktemp("phantoms") / "us"
    generate("us", 24, out, seed=3, size=(64, 64), progress=False)
    return out


@pytest.fixture(scope="module")
def us_run(us_phantoms: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """One finished 3-epoch training run of the ultrasound bundle, tracked in its own SQLite store."""
    root = tmp_path_factory.mktemp("run")
    uri = f"sqlite:///{root / 'mlruns.db'}"
    result = train("breast_us_seg_2d", data=us_phantoms, output=root / "run", epochs=3, tracking_uri=uri, overrides=SMALL_US)
    return result, uri


def test_training_writes_a_complete_run(us_run: tuple) -> None:
    result, _ = us_run
    for path in (result.model_pt, result.model_ts, result.learning_curve, result.archive):
        assert path.is_file() and path.stat().st_size > 0, path
    state = torch.load(result.model_pt, weights_only=True)
    assert "model.0.conv.unit0.conv.weight" in state  # a bare state dict (MONAI bundle convention)
    last = torch.load(result.run_dir / "models" / "last.pt", weights_only=True)
    assert last["trainer"]["epoch_length"] > 0 and last["trainer"]["iteration"] == 3 * last["trainer"]["epoch_length"]
    trained = Bundle(result.trained_bundle)
    assert (trained.root / "models" / "model.pt").is_file() and (trained.root / "configs" / "inference.json").is_file()
    assert trained.metadata["eval_metrics"]["val_mean_dice"] == pytest.approx(result.best_val_dice, abs=1e-4)
    record = json.loads((result.run_dir / "run.json").read_text())
    assert record["status"] == "finished" and record["mlflow_run_id"] == result.mlflow_run_id


def test_mlflow_holds_params_metrics_artifacts_and_a_loadable_registered_model(us_run: tuple) -> None:
    result, uri = us_run
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(result.mlflow_run_id)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["epochs"] == "3" and params["image_size"] == "64"
    assert params["network_def._target_"] == "UNet" and params["loss._target_"] == "DiceFocalLoss"
    steps = {k: [m.step for m in client.get_metric_history(run.info.run_id, k)] for k in ("train_loss", "val_mean_dice")}
    assert sorted(steps["train_loss"]) == [1, 2, 3] and sorted(steps["val_mean_dice"]) == [1, 2, 3]
    best = max(m.value for m in client.get_metric_history(run.info.run_id, "val_mean_dice"))
    assert best == pytest.approx(result.best_val_dice)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"learning_curve.png", "executed_train_config.json", result.archive.name} <= artifacts
    # no file names of cases reach MLflow (they can carry patient identifiers)
    logged = json.dumps(params) + json.dumps(run.data.tags)
    assert "benign (" not in logged and "malignant (" not in logged

    version = client.get_model_version("breast_us_seg_2d", result.registered_version)
    assert version.tags["bundle_version"] == Bundle.find("breast_us_seg_2d").version
    assert version.run_id == result.mlflow_run_id
    from sum_monai.tracking.store import using

    # mlflow.set_tracking_uri also sets $MLFLOW_TRACKING_URI, which MONAI's MLFlowHandler prefers to
    # the URI it is given: set for the rest of the process, it sent later tests' runs to this store
    with using(uri):
        model = mlflow.pytorch.load_model(f"models:/breast_us_seg_2d/{result.registered_version}")
    x = torch.rand(1, 1, 64, 64)
    scripted = torch.jit.load(str(result.model_ts))
    with torch.no_grad():
        out = model(x)
        assert out.shape == (1, 2, 64, 64)
        assert torch.allclose(out, scripted(x), atol=1e-6)


def test_monai_alone_on_the_run_bundle_prints_the_figures_of_sum_monai_evaluate(us_run: tuple, tmp_path: Path) -> None:
    """A run is a bundle: in its folder, `python -m monai.bundle run` with train.json + evaluate.json,
    given only the datalist, the split and an output folder, prints the figures of
    `sum-monai evaluate --run` (the recipe is in the configs; the normal-image share is the
    bundle's own ``val_normal_marked``)."""
    result, uri = us_run
    ours = evaluate("breast_us_seg_2d", run=result.run_dir, split="test", tracking_uri=uri, output=tmp_path / "ours")
    alone = tmp_path / "monai"
    done = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "--config_file", "['configs/train.json','configs/evaluate.json']",
         "--bundle_root", ".", "--data_list_file_path", str(result.run_dir / "datalist.json"), "--eval_split", "test",
         "--output_dir", str(alone)],
        cwd=result.trained_bundle, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.rsplit(",", 1) for line in (alone / "metrics.csv").read_text().splitlines() if line.strip()]
    theirs = {k: float(v) for k, v in rows}
    assert theirs["val_mean_dice"] == pytest.approx(ours.summary["all"]["dice"], abs=1e-4)
    assert theirs["val_mean_iou"] == pytest.approx(ours.summary["all"]["iou"], abs=1e-4)
    test = json.loads((result.run_dir / "datalist.json").read_text())["test"]
    normals = sum(c["class"] == "normal" for c in test)
    assert normals > 0  # the phantom split holds lesion-free images, so the share is measured
    assert ours.summary["normal_images"]["n"] == normals
    assert theirs["val_normal_marked"] == pytest.approx(ours.summary["normal_images"]["share_with_predicted_lesion"])


def test_evaluation_writes_per_case_metrics_on_the_input_grid(us_run: tuple) -> None:
    result, uri = us_run
    ev = evaluate("breast_us_seg_2d", run=result.run_dir, split="test", tracking_uri=uri)
    datalist = json.loads((result.run_dir / "datalist.json").read_text())
    test_ids = {c["case_id"] for c in datalist["test"]}
    with ev.per_case_csv.open() as f:
        rows = list(csv.DictReader(f))
    assert {r["case_id"] for r in rows} == test_ids
    assert {"dice", "iou", "precision", "recall", "f1", "hd95"} <= set(rows[0])
    lesion = [r for r in rows if r["class"] != "normal"]
    assert lesion and all(0.0 <= float(r["dice"]) <= 1.0 for r in lesion)
    mean_dice = np.mean([float(r["dice"]) for r in lesion])
    assert ev.summary["all"]["dice"] == pytest.approx(mean_dice, abs=1e-3)
    # predictions are label maps at each input's own size
    from PIL import Image

    base = result.run_dir
    for case in datalist["test"]:
        image = Image.open(base / case["image"])
        stem = Path(case["image"]).name[: -len(".png")]
        pred = next((ev.output_dir / "predictions").rglob(f"{stem}_seg.png"))
        mask = np.asarray(Image.open(pred))
        assert mask.shape == (image.height, image.width)
        assert set(np.unique(mask)) <= {0, 1}
    assert ev.overlays_png and ev.overlays_png.is_file()
    run = mlflow.MlflowClient(tracking_uri=uri).get_run(ev.mlflow_run_id)
    assert run.data.tags["source_run_id"] == result.mlflow_run_id
    assert run.data.metrics["val_mean_dice"] == pytest.approx(ev.summary["all"]["dice"], abs=1e-3)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "sum_monai", *args]


def _errors(text: str) -> str:
    """The lines of a failed command's output that say what went wrong."""
    return "\n".join(line for line in text.splitlines() if "Error" in line or "error:" in line)[-3000:]


def _trainer_epoch(path: Path) -> int:
    return int(torch.load(path, weights_only=True)["trainer"]["iteration"] // torch.load(path, weights_only=True)["trainer"]["epoch_length"])


def test_sigkill_then_resume_loses_at_most_the_epoch_in_flight(us_phantoms: Path, tmp_path: Path) -> None:
    """A real process killed with SIGKILL mid-training resumes from its last finished epoch."""
    run_dir, uri = tmp_path / "run", f"sqlite:///{tmp_path / 'mlruns.db'}"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    args = ["train", "--bundle", "breast_us_seg_2d", "--data", str(us_phantoms), "--output", str(run_dir),
            "--tracking-uri", uri, "--set", "image_size=64", "--set", "batch_size=4"]  # fmt: skip
    proc = subprocess.Popen(_cli(*args, "--epochs", "40"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = run_dir / "models" / "last.pt"
    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            if last.is_file() and _trainer_epoch(last) >= 2:
                break
            assert proc.poll() is None, "training ended before it could be killed"
            time.sleep(0.2)
        time.sleep(0.7)  # land somewhere inside the next epoch (or its checkpoint write)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed_at = _trainer_epoch(last)  # loads: the kill left no corrupt checkpoint
    torch.load(run_dir / "models" / "model.pt", weights_only=True)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"

    target = killed_at + 2
    done = subprocess.run(
        _cli("train", "--bundle", "breast_us_seg_2d", "--resume", "--output", str(run_dir), "--epochs", str(target)),
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, _errors(done.stdout + done.stderr)
    assert _trainer_epoch(last) == target
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "finished"
    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("breast_us_seg_2d").experiment_id])
    assert len(runs) == 1, "the resumed training must continue the same MLflow run"
    steps = sorted({m.step for m in client.get_metric_history(runs[0].info.run_id, "train_loss")})
    assert steps == list(range(1, target + 1)), "every epoch logged once the run is complete"


def test_checkpoint_write_interrupted_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash while a checkpoint is being written leaves the previous model.pt intact and alone."""
    from ignite.engine import Engine

    from sum_monai.bundle.bundle_scripts.checkpoint import AtomicCheckpointSaver

    net = torch.nn.Linear(2, 2)
    engine = Engine(lambda e, b: None)
    AtomicCheckpointSaver(str(tmp_path), {"model": net}, "model.pt").attach(engine)
    engine.run([0], max_epochs=1)
    before = (tmp_path / "model.pt").read_bytes()
    real_save = torch.save

    def crash_after_writing(obj: object, f: object, *a: object, **k: object) -> None:
        real_save(obj, f, *a, **k)
        raise RuntimeError("process died while writing the checkpoint")

    with torch.no_grad():
        net.weight.add_(1.0)
    monkeypatch.setattr(torch, "save", crash_after_writing)
    with pytest.raises(RuntimeError, match="died while writing"):
        engine.run([0], max_epochs=2)
    assert (tmp_path / "model.pt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert not torch.equal(saved["weight"], net.weight)  # still the first epoch's weights


def test_torchrun_ddp_with_two_cpu_processes(us_phantoms: Path, tmp_path: Path) -> None:
    """multi_gpu_train.json through torchrun: 2 gloo processes, one MLflow run, one model.pt."""
    run_dir, uri = tmp_path / "run", f"sqlite:///{tmp_path / 'mlruns.db'}"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(
        _cli("train", "--bundle", "breast_us_seg_2d", "--data", str(us_phantoms), "--output", str(run_dir),
             "--tracking-uri", uri, "--epochs", "2", "--nproc-per-node", "2",
             "--set", "image_size=64", "--set", "batch_size=4"),
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, _errors(done.stdout + done.stderr)
    torch.load(run_dir / "models" / "model.pt", weights_only=True)
    # each of the 2 processes sees its half of the training cases (DistributedSampler)
    n_train = len(json.loads((run_dir / "datalist.json").read_text())["training"])
    trainer = torch.load(run_dir / "models" / "last.pt", weights_only=True)["trainer"]
    per_rank = math.ceil(n_train / 2)
    assert trainer["epoch_length"] == math.ceil(per_rank / 4)
    assert trainer["iteration"] == 2 * trainer["epoch_length"]
    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("breast_us_seg_2d").experiment_id])
    assert len(runs) == 1
    steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, "train_loss")]
    assert sorted(steps) == [1, 2], "only rank 0 logs"


def test_two_processes_can_open_a_new_sqlite_store_at_once(tmp_path: Path) -> None:
    """Two trainings started together on a fresh mlruns.db used to race in MLflow's schema migration."""
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    code = (
        "import sys; from sum_monai.tracking.store import ensure_experiment; "
        "print(ensure_experiment(sys.argv[1], sys.argv[2]))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, uri, name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in ("exp_a", "exp_b")
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    client = mlflow.MlflowClient(tracking_uri=uri)
    assert {client.get_experiment_by_name(n).experiment_id for n in ("exp_a", "exp_b")} == {
        out.strip() for out, _ in outs
    }


def test_resume_after_a_failure_past_the_last_epoch_completes_the_same_mlflow_run(
    us_phantoms: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Training finished, then the export failed: --resume only completes the run (no second MLflow run)."""
    import sum_monai.workflows.train as train_module

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    real_export = train_module.export_torchscript

    def broken_export(*args: object, **kwargs: object) -> Path:
        raise RuntimeError("export failed (simulated)")

    monkeypatch.setattr(train_module, "export_torchscript", broken_export)
    with pytest.raises(RuntimeError, match="simulated"):
        train("breast_us_seg_2d", data=us_phantoms, output=tmp_path / "run", epochs=2, tracking_uri=uri,
              overrides=SMALL_US)  # fmt: skip
    monkeypatch.setattr(train_module, "export_torchscript", real_export)
    before = (tmp_path / "run" / "models" / "last.pt").stat().st_mtime_ns
    result = train("breast_us_seg_2d", output=tmp_path / "run", resume=True)
    assert (tmp_path / "run" / "models" / "last.pt").stat().st_mtime_ns == before  # no epoch was run again
    assert result.epochs == 2 and result.best_val_dice is not None and result.model_ts.is_file()
    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("breast_us_seg_2d").experiment_id])
    assert [r.info.run_id for r in runs] == [result.mlflow_run_id]
    assert len(client.get_metric_history(result.mlflow_run_id, "val_mean_dice")) == 2
    assert result.registered_version == "1"


def test_warm_start_begins_from_the_given_weights(us_run: tuple, us_phantoms: Path, tmp_path: Path) -> None:
    """``initial_weights`` (CLI ``--init``) loads an earlier run's weights; with lr 0 they stay exactly as loaded."""
    first, _ = us_run
    result = train("breast_us_seg_2d", data=us_phantoms, output=tmp_path / "warm", epochs=1,
                   tracking_uri=f"sqlite:///{tmp_path / 'mlruns.db'}",
                   overrides={**SMALL_US, "learning_rate": 0.0, "loss#batch": False}, initial_weights=first.model_pt)  # fmt: skip
    start = torch.load(first.model_pt, weights_only=True)
    after = torch.load(result.model_pt, weights_only=True)
    convs = [k for k in start if k.endswith("conv.weight")]
    assert len(convs) > 10
    for key in convs:
        torch.testing.assert_close(after[key], start[key], rtol=0, atol=0)
    recorded = json.loads((result.run_dir / "run.json").read_text())["options"]["initial_weights"]
    assert recorded == str(first.model_pt.resolve())
    # a run setting, never written into the run's bundle; the recipe (loss#batch, training-only) is
    trained = json.loads((result.trained_bundle / "configs" / "train.json").read_text())
    assert trained["initial_weights"] == "" and trained["loss"]["batch"] is False and trained["learning_rate"] == 0.0
    # evaluating the run evaluates its bundle as it is
    evaluated = evaluate("breast_us_seg_2d", run=result.run_dir, split="validation")
    assert evaluated.output_dir == result.run_dir / "evaluation-validation"
    assert 0.0 <= evaluated.summary["all"]["dice"] <= 1.0


def test_warm_start_from_unfit_weights_fails_before_anything_is_written(tmp_path: Path, us_phantoms: Path) -> None:
    from monai.networks.nets import UNet

    from sum_monai.errors import ConfigError

    other = tmp_path / "other.pt"
    torch.save(UNet(2, 1, 2, channels=(8, 16), strides=(2,)).state_dict(), other)
    with pytest.raises(ConfigError, match=r"other\.pt: the weights do not fit the bundle.s network_def .*missing key"):
        train("breast_us_seg_2d", data=us_phantoms, output=tmp_path / "run", epochs=1,
              overrides=SMALL_US, initial_weights=other)  # fmt: skip
    with pytest.raises(ConfigError, match=r"missing\.pt: checkpoint not found"):
        train("breast_us_seg_2d", data=us_phantoms, output=tmp_path / "run", epochs=1,
              overrides=SMALL_US, initial_weights=tmp_path / "missing.pt")  # fmt: skip
    assert not (tmp_path / "run").exists()
