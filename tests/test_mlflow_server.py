"""Training and evaluation tracked on a real MLflow tracking server, and the server going away.

A group shares one ``mlflow server`` (SQLite backend store, artifacts served by the server); every
command is pointed at it with ``--tracking-uri http://...`` (or ``MLFLOW_TRACKING_URI``). The
server here runs on 127.0.0.1 on a free port (:mod:`mlflow_server`); the runs are tiny (32 px
ultrasound phantoms, 2-4 epochs), so what is checked is the plumbing: what the server holds, that
artifacts went through it, that the registered model loads back and predicts what the bundle
predicts, and what an outage mid-run leaves behind (checkpoints, metrics, tags, messages).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import mlflow_server  # tests/ is on sys.path under pytest's default import mode
import numpy as np
import pytest
import torch
from PIL import Image

from sum_monai.bundle.bundle_scripts.tracking import LATE_TAG, epoch_ranges, is_unreachable, parse_ranges
from sum_monai.bundle.locate import Bundle
from sum_monai.bundle.run import create_workflow
from sum_monai.cli import main
from sum_monai.phantoms import generate
from sum_monai.predict.runner import predict

BUNDLE = "breast_us_seg_2d"
#: 32 px, narrow network: seconds per epoch on a CPU
SMALL = ["--set", "image_size=32", "--set", "batch_size=4", "--set", "val_interval=1",
         "--set", "network_def#channels=[4, 8, 16, 32, 64]"]  # fmt: skip
CURVES = ("train_loss", "val_mean_dice")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[mlflow_server.MlflowServer]:
    srv = mlflow_server.MlflowServer(tmp_path_factory.mktemp("mlflow_server")).start()
    mlflow_server.SERVER = srv
    try:
        yield srv
    finally:
        srv.stop()
        mlflow_server.SERVER = None
        print(f"\nmlflow server starts (s): {[round(s, 1) for s in srv.starts]}")


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("phantoms") / "us"
    generate("us", 12, out, seed=3, size=(48, 64), progress=False)
    return out


@pytest.fixture(scope="module")
def tracked(server: mlflow_server.MlflowServer, phantoms: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``sum-monai train`` (2 epochs) then ``sum-monai evaluate``, both with ``--tracking-uri http://...``.

    Run from an empty folder, so that anything MLflow wrote locally instead of through the server
    would show up there.
    """
    work = tmp_path_factory.mktemp("work")
    here = os.getcwd()
    os.chdir(work)
    timings: dict[str, float] = {}
    try:
        start = time.monotonic()
        assert main(["train", "--bundle", BUNDLE, "--data", str(phantoms), "--output", str(work / "run"),
                     "--epochs", "2", "--tracking-uri", server.url, "--device", "cpu", *SMALL]) == 0  # fmt: skip
        timings["train"] = time.monotonic() - start
        start = time.monotonic()
        assert main(["evaluate", "--bundle", BUNDLE, "--run", str(work / "run"), "--split", "test",
                     "--tracking-uri", server.url, "--device", "cpu"]) == 0  # fmt: skip
        timings["evaluate"] = time.monotonic() - start
    finally:
        os.chdir(here)
    print(f"\ntracked run timings (s): { {k: round(v, 1) for k, v in timings.items()} }")
    return {"work": work, "run": work / "run", "record": json.loads((work / "run" / "run.json").read_text())}


def _client(server: mlflow_server.MlflowServer) -> Any:
    return mlflow.MlflowClient(tracking_uri=server.url)


def _steps(client: Any, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_params_metrics_and_artifacts_go_through_the_server(server: mlflow_server.MlflowServer, tracked: dict) -> None:
    client, record = _client(server), tracked["record"]
    assert record["tracking_uri"] == server.url and record["status"] == "finished"
    run = client.get_run(record["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["epochs"] == "2" and run.data.params["image_size"] == "32"
    assert run.data.params["network_def.channels"] == "[4, 8, 16, 32, 64]"
    assert {k: _steps(client, run.info.run_id, k) for k in CURVES} == {k: [1, 2] for k in CURVES}
    assert LATE_TAG not in run.data.tags  # nothing arrived late
    # artifacts are served by the server: the experiment's root is the server's proxy URI and the
    # files are in its --artifacts-destination, not anywhere the client wrote to
    assert client.get_experiment_by_name(BUNDLE).artifact_location.startswith("mlflow-artifacts:")
    listed = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"learning_curve.png", "executed_train_config.json", f"{BUNDLE}-{Bundle.find(BUNDLE).version}.zip"} <= listed
    stored = {p.name for p in server.artifacts.rglob("*") if p.is_file()}
    assert {"learning_curve.png", "executed_train_config.json", f"{BUNDLE}-{Bundle.find(BUNDLE).version}.zip",
            "MLmodel"} <= stored  # fmt: skip
    assert not list(tracked["work"].rglob("mlruns*")), "MLflow wrote a local store instead of using the server"
    assert not list(tracked["run"].rglob("mlflow_unsent_*.json"))


def test_registered_model_loads_from_the_server_and_predicts_the_bundles_mask(
    server: mlflow_server.MlflowServer, tracked: dict, phantoms: Path, tmp_path: Path
) -> None:
    client = _client(server)
    version = client.search_model_versions(f"name = '{BUNDLE}'")[0]
    assert version.run_id == tracked["record"]["mlflow_run_id"]
    assert version.tags["bundle_version"] == Bundle.find(BUNDLE).version
    from sum_monai.tracking.store import using

    with using(server.url):  # and back: mlflow.set_tracking_uri would leave $MLFLOW_TRACKING_URI set
        model = mlflow.pytorch.load_model(f"models:/{BUNDLE}/{version.version}")  # downloaded through the server
    trained = Bundle(tracked["run"] / "bundle" / BUNDLE)
    # the registered TorchScript is the trained network: same logits as the eager network and model.pt
    wf = create_workflow(trained, "inference", {"output_dir": str(tmp_path / "pp")})
    net = wf.parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(trained.root / "models" / "model.pt", map_location="cpu", weights_only=True))
    net.eval()
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), net(x), atol=1e-5)
    # and through the bundle's own inference transforms and inferer it gives the mask of `sum-monai predict`
    image = sorted((phantoms / "malignant").glob("malignant (*).png"))[0]
    pre, inferer, post = (wf.parser.get_parsed_content(k) for k in ("preprocessing", "inferer", "postprocessing"))
    data = pre({"image": str(image)})
    with torch.no_grad():
        data["pred"] = inferer(data["image"][None], model)[0]
    registered_mask = np.asarray(post(data)["pred"]).T  # (W, H) -> PNG rows x columns
    report = predict(trained.root, image, tmp_path / "predict", progress=False)
    assert report.exit_status == 0
    bundle_mask = np.asarray(Image.open(next((tmp_path / "predict").rglob("*_seg.png"))))
    assert bundle_mask.shape == registered_mask.shape == (48, 64)
    np.testing.assert_array_equal(registered_mask, bundle_mask)


def test_evaluation_is_a_run_on_the_server(server: mlflow_server.MlflowServer, tracked: dict) -> None:
    client = _client(server)
    exp = client.get_experiment_by_name(BUNDLE)
    runs = client.search_runs([exp.experiment_id], "tags.source_run_id = '{}'".format(tracked["record"]["mlflow_run_id"]))
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    summary = json.loads(next(tracked["run"].rglob("summary.json")).read_text())["summary"]
    assert runs[0].data.metrics["val_mean_dice"] == pytest.approx(summary["all"]["dice"], abs=1e-3)
    assert "per_case.csv" in {a.path for a in client.list_artifacts(runs[0].info.run_id)}


def _with_outage(monkeypatch: pytest.MonkeyPatch, stop_after: int, back_after: int | None) -> dict[str, Any]:
    """Add :class:`mlflow_server.Outage` to the trainer's handlers of the next ``sum-monai train``."""
    import sum_monai.workflows.train as train_module

    real = train_module.mlflow_settings
    seen: dict[str, Any] = {}

    def settings(*args: Any, **kwargs: Any) -> dict[str, Any]:
        out = real(*args, **kwargs)
        out["handlers_id"]["outage"] = {"id": "train#trainer", "handlers": "train#handlers"}
        out["configs"]["outage"] = {"_target_": "mlflow_server.Outage", "stop_after": stop_after, "back_after": back_after}
        for role in ("trainer", "validator"):  # try at every event, without retries: exact epochs, no waiting
            out["configs"][role].update(retry_interval=0, request_retries=0)
        seen["settings"] = out
        return out

    monkeypatch.setattr(train_module, "mlflow_settings", settings)
    return seen


def _epochs_done(run_dir: Path) -> int:
    state = torch.load(run_dir / "models" / "last.pt", weights_only=True)["trainer"]
    return int(state["iteration"] // state["epoch_length"])


def test_server_away_mid_run_training_goes_on_and_the_run_says_what_came_late(
    server: mlflow_server.MlflowServer, phantoms: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Server stopped after epoch 1 and started again after epoch 3 of 4: nothing is lost."""
    _with_outage(monkeypatch, stop_after=1, back_after=3)
    mlflow_server.EVENTS.clear()
    assert main(["train", "--bundle", BUNDLE, "--data", str(phantoms), "--output", str(tmp_path / "run"),
                 "--epochs", "4", "--tracking-uri", server.url, "--device", "cpu", *SMALL]) == 0  # fmt: skip
    log = capsys.readouterr().out  # the bundle's logging.conf logs to stdout
    assert [(a, e) for a, e, _ in mlflow_server.EVENTS] == [("stop", 1), ("start", 3)]
    back = mlflow_server.EVENTS[1][2]
    assert _epochs_done(tmp_path / "run") == 4 and (tmp_path / "run" / "models" / "model.pt").is_file()
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    client = _client(server)
    run = client.get_run(record["mlflow_run_id"])
    assert run.info.status == "FINISHED" and record["status"] == "finished"
    assert {k: _steps(client, run.info.run_id, k) for k in CURVES} == {k: [1, 2, 3, 4] for k in CURVES}
    assert run.data.tags[LATE_TAG] == "2-3"
    assert "did not answer" in run.data.tags["tracking.note"]
    # the late values carry the time they were measured, not the time they arrived
    late = [m for m in client.get_metric_history(run.info.run_id, "train_loss") if m.step in (2, 3)]
    assert all(m.timestamp / 1000 < back for m in late)
    assert client.search_model_versions(f"run_id = '{run.info.run_id}'")
    assert not list((tmp_path / "run").rglob("mlflow_unsent_*.json"))
    assert "does not answer" in log and "training goes on" in log
    assert "answers again: the metrics of epochs 2-3 were sent late" in log


@pytest.mark.slow  # ~5 min: the end-of-run sends wait out their retries against a server that is gone (make test-slow)
def test_server_away_at_the_end_then_resume_completes_the_run(
    server: mlflow_server.MlflowServer, phantoms: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Server stopped after epoch 1 of 3 and only back after the training: a clear message, then --resume."""
    _with_outage(monkeypatch, stop_after=1, back_after=None)
    run_dir = tmp_path / "run"
    try:
        status = main(["train", "--bundle", BUNDLE, "--data", str(phantoms), "--output", str(run_dir),
                       "--epochs", "3", "--tracking-uri", server.url, "--device", "cpu", *SMALL])  # fmt: skip
    finally:
        if not server.answers():
            server.start()
    captured = capsys.readouterr()
    err, log = captured.err, captured.out
    assert status == 2, err
    assert "does not answer, so the run cannot be completed there" in err
    assert "train_loss, val_mean_dice, val_mean_iou of epochs 2-3 are only in the training log" in err
    assert f"--resume --output {run_dir}" in err and "Traceback" not in err
    # the handler's own warning at the end of the run
    assert "the metrics of epochs 2-3 (train_loss, val_mean_dice, val_mean_iou) are only in the training log" in log
    # the training itself finished: every checkpoint is there
    assert _epochs_done(run_dir) == 3 and (run_dir / "models" / "model.pt").is_file()
    unsent = sorted(p.name for p in (run_dir / "eval").glob("mlflow_unsent_*.json"))
    assert unsent == ["mlflow_unsent_train.json", "mlflow_unsent_validate.json"]
    record = json.loads((run_dir / "run.json").read_text())
    client = _client(server)
    exp = client.get_experiment_by_name(BUNDLE)
    (run,) = client.search_runs([exp.experiment_id], f"attributes.run_name = '{record['run_name']}'")
    assert run.info.status == "RUNNING" and _steps(client, run.info.run_id, "train_loss") == [1]

    monkeypatch.undo()
    assert main(["train", "--bundle", BUNDLE, "--resume", "--output", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "training had finished; completing the run" in out and "late to run" in out
    run = client.get_run(run.info.run_id)
    assert run.info.status == "FINISHED"
    assert {k: _steps(client, run.info.run_id, k) for k in CURVES} == {k: [1, 2, 3] for k in CURVES}
    assert run.data.tags[LATE_TAG] == "2-3" and "local file of unsent metrics" in run.data.tags["tracking.note"]
    assert client.search_model_versions(f"run_id = '{run.info.run_id}'")
    assert not list(run_dir.rglob("mlflow_unsent_*.json"))
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"


def test_a_server_that_is_not_there_fails_fast_with_a_clear_message(
    phantoms: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{mlflow_server.free_port()}"
    start = time.monotonic()
    status = main(["train", "--bundle", BUNDLE, "--data", str(phantoms), "--output", str(tmp_path / "run"),
                   "--epochs", "1", "--tracking-uri", url, *SMALL])  # fmt: skip
    assert status == 2 and time.monotonic() - start < 60  # not MLflow's four minutes of retries
    err = capsys.readouterr().err
    assert f"MLflow tracking server {url} does not answer (before training)" in err and "--tracking-uri" in err
    assert not (tmp_path / "run" / "models").exists()


def test_epoch_ranges_and_what_counts_as_unreachable() -> None:
    from mlflow.exceptions import MlflowException, RestException

    assert epoch_ranges([5, 2, 3, 7, 8, 9]) == "2-3, 5, 7-9" and epoch_ranges([]) == ""
    assert parse_ranges("2-3, 5, 7-9") == {2, 3, 5, 7, 8, 9} and parse_ranges(None) == set()
    assert is_unreachable(ConnectionRefusedError())
    assert is_unreachable(MlflowException("API request to http://h/api failed with exception Max retries exceeded"))
    assert is_unreachable(RestException({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "busy"}))
    assert not is_unreachable(RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "changed param"}))
    assert not is_unreachable(MlflowException("Cannot set a deleted experiment"))
