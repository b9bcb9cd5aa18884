"""The MONAI Label loop with the shipped bundles, driven through the API as 3D Slicer or OHIF drive it.

One server on 127.0.0.1 serves the shipped ultrasound bundle (its BUSI weights, as shipped) and the
MRI bundle (no weights are shipped: trained briefly on phantoms first, as in test_monailabel.py),
with training on and every training tracked in an MLflow server. Starting from an empty studies
folder, the test

1. uploads 2D ultrasound PNGs and 3D DCE-MRI NIfTIs (``PUT /datastore/image``) with MONAI Label's
   own Python client (``monailabel.client.MONAILabelClient``, the one the Slicer plugin carries);
2. sends bad uploads (a corrupt image, a label of another size, a corrupt label, a label with
   values no bundle knows, a label of an image that is not there) and checks each gets a clear
   HTTP error and leaves the datastore and the weights as they were;
3. asks active learning (``/activelearning/first``, ``/random``) for the next unlabelled image,
   labels it (``PUT /datastore/label``) and asks again, until one image is left;
4. trains each bundle briefly (``POST /train/<bundle>``), waits for ``GET /train/``, and checks that
   ``/infer`` then answers with the new weights (the mask of ``sum-monai predict`` with them) and
   that the training is a run in the MLflow server;
5. makes a training fail after it has already replaced the weights once, and checks that the
   served weights are put back.

Slow (``make test-slow``): the MONAI Label venv (``sum-monai monailabel setup``) and a few minutes.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import mlflow_server  # tests/ is on sys.path under pytest's default import mode
import nibabel as nib
import numpy as np
import pytest
import requests
from PIL import Image

from sum_monai.deploy import monailabel as ml
from sum_monai.errors import ConfigError
from sum_monai.phantoms import generate
from sum_monai.predict.runner import predict
from sum_monai.workflows.train import train

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
US, MRI = "breast_us_seg_2d", "breast_mri_seg_3d"
#: The MRI bundle trained briefly before it is served (as REAL_RUNS in test_monailabel.py)
MRI_RUN = {"roi_size": [32, 32, 16], "pixdim": [2.0, 2.0, 4.0], "network_def#channels": [8, 16, 32, 64],
           "val_interval": 1, "num_samples": 1, "learning_rate": 0.01}  # fmt: skip
N_US, N_MRI = 6, 3


def load_client(venv: Path) -> Any:
    """``monailabel.client.MONAILabelClient`` from the MONAI Label venv (stdlib + requests only)."""
    path = next((venv / "lib").glob("python3*/site-packages/monailabel/client/client.py"))
    spec = importlib.util.spec_from_file_location("monailabel_client", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_cases(root: Path) -> dict[str, dict[str, Path]]:
    """Images and their labels as a viewer would send them: ``{id: {"image", "label"}}``.

    Ultrasound: phantom PNGs (128 x 96) with labels 0/1 (the BUSI-style masks hold 0/255, which is
    not a label value: kept as ``raw_mask`` for the bad upload). MRI: the two DCE phases stacked
    into one 4D NIfTI (``/infer`` and the datastore take one file) with the 3D label.
    """
    us = root / "phantoms" / "us"
    generate("us", N_US, us, seed=5, size=(96, 128), progress=False)
    mri = root / "phantoms" / "mri"
    generate("mri", 4, mri, seed=1, size=(64, 48, 24), format="nifti", progress=False)
    out = root / "cases"
    out.mkdir()
    cases: dict[str, dict[str, Path]] = {}
    images = sorted(p for p in us.rglob("*.png") if "_mask" not in p.name)[:N_US]
    for i, image in enumerate(images, 1):
        cid = f"us_{i:02d}"
        (out / "labels").mkdir(exist_ok=True)
        shutil.copy(image, out / f"{cid}.png")
        masks = [np.asarray(Image.open(m).convert("L")) for m in sorted(image.parent.glob(f"{image.stem}_mask*.png"))]
        Image.fromarray((np.max(masks, axis=0) > 0).astype(np.uint8)).save(out / "labels" / f"{cid}.png")
        cases[cid] = {"image": out / f"{cid}.png", "label": out / "labels" / f"{cid}.png",
                      "raw_mask": image.with_name(f"{image.stem}_mask.png")}  # fmt: skip
    for i in range(1, N_MRI + 1):
        cid = f"mri_{i:02d}"
        pre, post = (nib.load(mri / "imagesTr" / f"breast_{i:04d}_{c:04d}.nii.gz") for c in (0, 1))
        volume = np.stack([np.asarray(pre.dataobj), np.asarray(post.dataobj)], axis=-1).astype(np.float32)
        nib.save(nib.Nifti1Image(volume, pre.affine), out / f"{cid}.nii.gz")
        label = nib.load(mri / "labelsTr" / f"breast_{i:04d}.nii.gz")
        nib.save(nib.Nifti1Image(np.asarray(label.dataobj).astype(np.uint8), label.affine), out / "labels" / f"{cid}.nii.gz")
        cases[cid] = {"image": out / f"{cid}.nii.gz", "label": out / "labels" / f"{cid}.nii.gz"}
    return cases


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    timings: dict[str, float] = {}
    notes: list[str] = []
    root = tmp_path_factory.mktemp("monailabel_loop")
    start = time.monotonic()
    venv = ml.setup_env(ml.default_venv())
    timings["setup_env"] = time.monotonic() - start
    tracking = mlflow_server.MlflowServer(root / "mlflow").start()
    try:
        cases = write_cases(root)
        start = time.monotonic()
        mri_run = train(MRI, data=root / "phantoms" / "mri", output=root / "runs" / MRI, epochs=2,
                        tracking_uri=f"sqlite:///{root}/mlruns.db", overrides=MRI_RUN)  # fmt: skip
        timings["train_mri_before_serving"] = time.monotonic() - start
        app = ml.prepare_app([REPO / "bundles" / US, mri_run.trained_bundle], root / "work", venv)
        log = (root / "server.log").open("w")
        server = ml.MonaiLabelServer(venv, app, root / "studies", [US, MRI], train=True, log=log,
                                     env={"OMP_NUM_THREADS": "1"}, tracking_uri=tracking.url)  # fmt: skip
        start = time.monotonic()
        server.start()
        try:
            try:
                info = server.wait_ready(timeout=600)
            except ConfigError as err:
                log.flush()
                pytest.fail(f"{err}\n--- server log ---\n{(root / 'server.log').read_text()[-4000:]}")
            timings["server_ready"] = time.monotonic() - start
            client = load_client(venv).MONAILabelClient(server.url, tmpdir=str(root / "client"))
            (root / "client").mkdir()
            yield {"server": server, "client": client, "info": info, "app": app, "cases": cases, "root": root,
                   "tracking": tracking, "timings": timings, "notes": notes, "studies": root / "studies"}  # fmt: skip
        finally:
            server.stop()
            log.close()
            print("\nMONAI Label loop:\n  " + "\n  ".join(notes))
            print("timings (s):", {k: round(v, 1) for k, v in timings.items()})
    finally:
        tracking.stop()


def weights(loop: dict[str, Any], model: str) -> Path:
    return loop["app"] / "model" / model / "models" / "model.pt"


def datastore(loop: dict[str, Any]) -> dict[str, Any]:
    resp = requests.get(f"{loop['server'].url}/datastore/", params={"output": "all"}, timeout=60)
    assert resp.status_code == 200
    return resp.json()


def labelled(loop: dict[str, Any]) -> set[str]:
    return {i for i, obj in datastore(loop)["objects"].items() if "final" in obj.get("labels", {})}


def infer_mask(loop: dict[str, Any], model: str, image_id: str) -> np.ndarray:
    """``/infer/<model>?image=<id>`` through the client; the mask as an array (PNG rows or NIfTI voxels)."""
    start = time.monotonic()
    out, _ = loop["client"].infer(model, image_id, {})
    loop["timings"][f"infer_{image_id}"] = time.monotonic() - start
    path = Path(out)
    if path.name.endswith((".nii", ".nii.gz")):
        return np.asarray(nib.load(path).dataobj)
    return np.asarray(Image.open(path))


def predicted_with_served_weights(loop: dict[str, Any], model: str, image_id: str, tag: str) -> np.ndarray:
    """``sum-monai predict`` with the app's copy of the bundle (the weights the server serves now)."""
    out = loop["root"] / "predict" / f"{model}-{image_id}-{tag}"
    report = predict(loop["app"] / "model" / model, loop["cases"][image_id]["image"], out, progress=False)
    assert report.exit_status == 0, report.failed
    mask = next(p for p in out.rglob("*_seg.*") if p.suffix != ".dcm" and p.suffix != ".json")
    if mask.name.endswith((".nii", ".nii.gz")):
        return np.asarray(nib.load(mask).dataobj)
    return np.asarray(Image.open(mask))


def train_and_wait(loop: dict[str, Any], model: str, params: dict[str, Any], timeout: float = 1800) -> dict[str, Any]:
    """``POST /train/<model>`` as a viewer does (in the background), then poll ``GET /train/`` until it ends."""
    client = loop["client"]
    start = time.monotonic()
    client.train_start(model, {"device": "cpu", "multi_gpu": False, **params})
    while True:
        time.sleep(2)
        status = client.train_status()
        if status["status"] not in ("SUBMITTED", "RUNNING"):
            break
        assert time.monotonic() - start < timeout, f"training of {model} still running after {timeout} s"
    loop["timings"][f"train_{model}_{status['status']}"] = time.monotonic() - start
    return status


def test_info_offers_both_bundles_for_training_tracked_in_the_group_server(loop: dict[str, Any]) -> None:
    info = loop["client"].info()
    assert set(info["models"]) == {US, MRI} and set(info["trainers"]) == {US, MRI}
    assert (info["models"][US]["dimension"], info["models"][MRI]["dimension"]) == (2, 3)
    config = info["trainers"][US]["config"]
    assert config["tracking_uri"] == loop["tracking"].url and config["tracking"][0] == "mlflow"
    assert info["datastore"]["total"] == 0


def test_upload_images_as_a_viewer_does(loop: dict[str, Any]) -> None:
    client, cases = loop["client"], loop["cases"]
    ids = list(cases)
    for cid in ids[:-1]:  # MONAI Label's client: PUT /datastore/?image=<id> (the older path of /datastore/image)
        assert client.upload_image(str(cases[cid]["image"]), cid)["image"] == cid
    last = ids[-1]
    with cases[last]["image"].open("rb") as f:  # PUT /datastore/image, as OHIF sends it
        resp = requests.put(f"{loop['server'].url}/datastore/image", params={"image": last},
                            files={"file": (cases[last]["image"].name, f)}, data={"params": "{}"}, timeout=60)  # fmt: skip
    assert resp.status_code == 200 and resp.json() == {"image": last}
    objects = datastore(loop)["objects"]
    assert set(objects) == set(cases) and labelled(loop) == set()
    for cid in ids:
        stored = next(loop["studies"].glob(f"{cid}.*"))
        assert sha(stored) == sha(cases[cid]["image"])
    loop["notes"].append(f"uploaded {len(ids)} images: {', '.join(ids)}")


def _refused(loop: dict[str, Any], call: Any, status: int, *needles: str) -> str:
    """Run a client call that must fail with HTTP ``status``; return the server's message."""
    before = (datastore(loop), sorted(p.relative_to(loop["studies"]) for p in loop["studies"].rglob("*") if p.is_file()
              and p.name != ".lock"), {m: sha(weights(loop, m)) for m in (US, MRI)})  # fmt: skip
    with pytest.raises(Exception) as err:
        call()
    text = str(getattr(err.value, "msg", "") or err.value)  # MONAILabelClientException keeps it in .msg
    assert f"Status: {status};" in text, text
    for needle in needles:
        assert needle in text, text
    after = (datastore(loop), sorted(p.relative_to(loop["studies"]) for p in loop["studies"].rglob("*") if p.is_file()
             and p.name != ".lock"), {m: sha(weights(loop, m)) for m in (US, MRI)})  # fmt: skip
    assert after == before, "a refused upload changed the datastore or the weights"
    loop["notes"].append(f"refused with HTTP {status}: {text.split('Response: ')[-1][:160]}")
    return text


def _put_image(loop: dict[str, Any], path: Path, image_id: str) -> None:
    with path.open("rb") as f:
        resp = requests.put(f"{loop['server'].url}/datastore/image", params={"image": image_id},
                            files={"file": (path.name, f)}, data={"params": "{}"}, timeout=60)  # fmt: skip
    if resp.status_code != 200:
        raise RuntimeError(f"Status: {resp.status_code}; Response: {resp.text}")


def test_bad_uploads_get_a_clear_http_error_and_change_nothing(loop: dict[str, Any], tmp_path: Path) -> None:
    client, cases = loop["client"], loop["cases"]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a PNG" * 20)
    _refused(loop, lambda: _put_image(loop, broken, "broken"), 422, "the image is not a readable image file")
    _refused(loop, lambda: client.save_label("us_01", str(broken)), 422, "the label is not a readable image file")
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((48, 64), np.uint8)).save(small)
    _refused(loop, lambda: client.save_label("us_01", str(small)), 422,
             "the label is 64 x 48 but its image 'us_01' is 128 x 96")  # fmt: skip
    raw = tmp_path / "raw_mask.png"  # the BUSI-style mask itself: 0 and 255
    shutil.copy(cases["us_01"]["raw_mask"], raw)
    _refused(loop, lambda: client.save_label("us_01", str(raw)), 422,
             "value(s) 255 that no served 2D bundle knows", "1 lesion (breast_us_seg_2d)")  # fmt: skip
    half = tmp_path / "half.nii.gz"
    label = nib.load(cases["mri_01"]["label"])
    nib.save(nib.Nifti1Image(np.asarray(label.dataobj)[::2, ::2], label.affine), half)
    _refused(loop, lambda: client.save_label("mri_01", str(half)), 422, "the label is 32 x 24 x 24 but its image 'mri_01' is 64 x 48 x 24")
    _refused(loop, lambda: client.save_label("nobody", str(cases["us_01"]["label"])), 404, "no image 'nobody'")


def test_active_learning_gives_the_next_unlabelled_image_until_one_is_left(loop: dict[str, Any]) -> None:
    client, cases = loop["client"], loop["cases"]
    order = []
    while len(labelled(loop)) < len(cases) - 1:
        sample = client.next_sample("first", {})
        cid = sample["id"]
        assert cid in cases and cid not in labelled(loop), sample
        result = client.save_label(cid, str(cases[cid]["label"]))  # the viewer submits its label
        assert result["image"] == cid
        order.append(cid)
    assert order == sorted(cases)[: len(cases) - 1]  # "first": the unlabelled images in id order
    (left,) = set(cases) - labelled(loop)
    assert client.next_sample("first", {})["id"] == left
    assert client.next_sample("random", {})["id"] == left
    info = client.info()["datastore"]
    assert (info["total"], info["completed"]) == (len(cases), len(cases) - 1)
    stored = loop["studies"] / "labels" / "final"
    for cid in order:
        assert sha(next(stored.glob(f"{cid}.*"))) == sha(cases[cid]["label"])
    loop["notes"].append(f"active learning 'first' gave, one after another: {', '.join(order)}; left: {left}")
    # a bad label sent again for an image that has a good one keeps the good one
    good = sha(next(stored.glob("us_01.*")))
    _refused(loop, lambda: client.save_label("us_01", str(cases["us_01"]["raw_mask"])), 422, "255")
    assert sha(next(stored.glob("us_01.*"))) == good


def _mlflow_run(loop: dict[str, Any], model: str, status: str) -> Any:
    client = mlflow.MlflowClient(tracking_uri=loop["tracking"].url)
    exp = client.get_experiment_by_name(model)
    assert exp is not None, f"no MLflow experiment {model}"
    runs = client.search_runs([exp.experiment_id], f"attributes.status = '{status}'", order_by=["start_time DESC"])
    runs = [r for r in runs if r.info.run_name.startswith(f"monailabel-{model}-")]
    assert runs, f"no {status} MONAI Label run in experiment {model}"
    return client, runs[0]


def test_train_ultrasound_then_infer_uses_the_new_weights(loop: dict[str, Any]) -> None:
    """From scratch (``pretrained: false``) for 2 epochs: far from the shipped BUSI weights, so masks change.

    ``/infer`` is checked on an image where ``sum-monai predict`` with the new weights and with the
    shipped ones disagree, so that agreeing with the new ones means the server uses them.
    """
    us_ids = sorted(c for c in loop["cases"] if c.startswith("us_"))
    before_sha = sha(weights(loop, US))
    old = {c: predicted_with_served_weights(loop, US, c, "before") for c in us_ids}
    status = train_and_wait(loop, US, {"max_epochs": 2, "val_split": 0.2, "pretrained": False})
    assert status["status"] == "DONE", json.dumps(status, default=str)[-3000:]
    assert sha(weights(loop, US)) != before_sha
    models = weights(loop, US).parent
    assert not (models / "model.pt.before-training").exists()
    # the shipped ensemble's other members are kept, no longer served beside the one retrained network
    assert not list(models.glob("fold*.pt")) and not (models / "ensemble-before-training").exists()
    kept = [p.name for p in next(models.glob("ensemble-replaced-*")).iterdir()]
    assert sorted(kept) == ["fold1.pt", "fold2.pt", "fold3.pt", "fold4.pt", "model.pt"], kept
    assert sha(next(models.glob("ensemble-replaced-*")) / "model.pt") == before_sha
    new = {c: predicted_with_served_weights(loop, US, c, "after") for c in us_ids}
    differ = {c: float(np.mean(old[c] != new[c])) for c in us_ids}
    cid = max(differ, key=lambda c: differ[c])
    assert differ[cid] > 0, f"the new weights predict the same masks as the shipped ones: {differ}"
    served = infer_mask(loop, US, cid)
    assert served.shape == new[cid].shape == (96, 128)
    agreement, vs_old = float(np.mean(served == new[cid])), float(np.mean(served == old[cid]))
    loop["notes"].append(f"{US}: trained 2 epochs from scratch; /infer {cid}: {agreement:.2%} equal to sum-monai "
                         f"predict with the new weights, {vs_old:.2%} with the shipped ones")  # fmt: skip
    assert agreement >= 0.999 and vs_old < agreement
    client, run = _mlflow_run(loop, US, "FINISHED")
    assert run.data.params["trained_by"] == "monailabel" and run.data.params["n_train"] == "4"
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "train_loss")) == [1, 2]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_mean_dice")] == [2]
    loop["notes"].append(f"{US}: MLflow run {run.info.run_name} FINISHED, metrics {sorted(run.data.metrics)}")


def test_train_mri_then_infer_uses_the_new_weights(loop: dict[str, Any]) -> None:
    """Fine-tuned (the default) for 2 epochs from the served weights; the 4D NIfTI datastore images only."""
    before_sha = sha(weights(loop, MRI))
    status = train_and_wait(loop, MRI, {"max_epochs": 2, "val_split": 0.34})
    assert status["status"] == "DONE", json.dumps(status, default=str)[-3000:]
    assert sha(weights(loop, MRI)) != before_sha
    mask = infer_mask(loop, MRI, "mri_01")
    assert mask.shape == (64, 48, 24)
    expected = predicted_with_served_weights(loop, MRI, "mri_01", "after")
    agreement = float(np.mean(mask == expected))
    loop["notes"].append(f"{MRI}: fine-tuned 2 epochs; /infer mri_01 {agreement:.2%} equal to sum-monai predict with the new weights")
    assert agreement >= 0.999
    client, run = _mlflow_run(loop, MRI, "FINISHED")
    assert run.data.params["n_train"] == "2"  # the 3 MRI labels only, not the ultrasound ones
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_mean_dice")) == [1, 2]


def test_a_failed_training_leaves_the_served_weights_as_they_were(loop: dict[str, Any]) -> None:
    """The training state checkpoint cannot be written (a folder is in its place): the MRI training dies at
    the end of epoch 1, after its validation has already replaced ``model.pt``; the old file is put back."""
    blocker = weights(loop, MRI).parent / "last.pt"
    if blocker.exists():
        blocker.unlink()
    blocker.mkdir()
    (blocker / "keep").write_text("a folder where the training state file goes")
    try:
        before_sha, before_mask = sha(weights(loop, MRI)), infer_mask(loop, MRI, "mri_01")
        status = train_and_wait(loop, MRI, {"max_epochs": 2, "val_split": 0.34})
        assert status["status"] == "ERROR", json.dumps(status, default=str)[-3000:]
        assert sha(weights(loop, MRI)) == before_sha
        assert not (weights(loop, MRI).parent / "model.pt.before-training").exists()
        np.testing.assert_array_equal(infer_mask(loop, MRI, "mri_01"), before_mask)
        log = (loop["root"] / "server.log").read_text()
        assert "put back as it was before the training" in log
        _, run = _mlflow_run(loop, MRI, "FAILED")
        loop["notes"].append(f"{MRI}: training failed ({status['status']}); weights unchanged; MLflow run {run.info.run_name} FAILED")
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(blocker)
