"""Serving bundles through a real MONAI Label server, offline (sum_monai.deploy.monailabel).

The fast tests check the bundle checks and the command line without a server. The slow ones
(``make test-slow``) create or reuse the MONAI Label venv (``sum-monai monailabel setup``, or the
venv named by ``$SUM_MONAI_MONAILABEL_VENV``; ~4 min the first time) and start servers on 127.0.0.1:

- the two smoke bundles of :mod:`monailabel_smoke` from one app, checked against the bundles' own
  prediction computed here with MONAI, and trained through ``POST /train``;
- the real bundles of ``bundles/``, trained briefly on phantoms and packaged by
  ``sum_monai.workflows.train``, checked against ``sum-monai predict`` on the same inputs.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import monailabel_smoke as smoke  # tests/ is on sys.path under pytest's default import mode
import nibabel as nib
import numpy as np
import pytest
import requests
import torch
from PIL import Image

from sum_monai.cli import main
from sum_monai.deploy import monailabel as ml
from sum_monai.errors import ConfigError
from sum_monai.phantoms import generate
from sum_monai.predict.runner import predict
from sum_monai.predict.tissue import presented_image
from sum_monai.workflows.train import train

# ----------------------------------------------------------------------------------------------
# Fast: bundle checks and command line (no server)
# ----------------------------------------------------------------------------------------------


def test_check_bundle_reads_what_monailabel_reads(tmp_path: Path) -> None:
    info2, info3 = (
        ml.check_bundle(smoke.make_bundle_2d(tmp_path)),
        ml.check_bundle(smoke.make_bundle_3d(tmp_path)),
    )
    assert (info2.name, info2.dimension, info2.labels, info2.trainable) == (
        "smoke_seg_2d",
        2,
        {"lesion": 1},
        False,
    )
    assert (info3.name, info3.dimension, info3.labels) == ("smoke_seg_3d", 3, {"tumour": 1})
    assert info2.weights == tmp_path / "smoke_seg_2d" / "models" / "model.pt"
    assert ml.check_bundle(smoke.make_bundle_2d(tmp_path / "t", train=True)).trainable


@pytest.mark.parametrize(("name", "labels"), [
    ("breast_us_seg_2d", {"lesion": 1}),
    ("mammo_seg_2d", {"benign": 1, "malignant": 2}),
])  # fmt: skip
def test_the_shipped_2d_bundles_pass_the_serving_checks(name: str, labels: dict[str, int]) -> None:
    """The shipped ensembles end with KeepConfidentLesionsd (a uint8 label map): servable as they are."""
    from sum_monai.bundle.locate import Bundle

    info = ml.check_bundle(Bundle.find(name).root)
    assert info.dimension == 2 and info.labels == labels and info.weights.is_file()


def test_check_bundle_lists_every_problem(tmp_path: Path) -> None:
    bundle = smoke.make_bundle_2d(tmp_path)
    bundle = bundle.rename(tmp_path / "us_detection_2d")
    (bundle / "models" / "model.pt").unlink()
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    fmt = meta["network_data_format"]
    fmt["outputs"] = {"seg": fmt["outputs"]["pred"]}
    (bundle / "configs" / "metadata.json").write_text(json.dumps(meta))
    infer = json.loads((bundle / "configs" / "inference.json").read_text())
    infer["postprocessing"]["transforms"] = infer["postprocessing"]["transforms"][:2]  # no argmax, no squeeze
    (bundle / "configs" / "inference.json").write_text(json.dumps(infer))
    with pytest.raises(ConfigError) as err:
        ml.check_bundle(bundle)
    text = str(err.value)
    assert text.count("\n  - ") == 5, text
    for part in ("'detection'", "'seg'", "models/model.pt", "SqueezeDimd", "uint8"):
        assert part in text


def test_check_bundle_dimension_must_match_network(tmp_path: Path) -> None:
    bundle = smoke.make_bundle_3d(tmp_path)
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    del meta["network_data_format"]["inputs"]["image"]["spatial_shape"]
    (bundle / "configs" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="spatial_shape must list 2"):
        ml.check_bundle(bundle)


def test_check_bundle_scripts_and_background(tmp_path: Path) -> None:
    bundle = smoke.make_bundle_3d(tmp_path)
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    meta["network_data_format"]["outputs"]["pred"]["channel_def"] = {"0": "normal", "1": "tumour"}
    (bundle / "configs" / "metadata.json").write_text(json.dumps(meta))
    (bundle / "scripts" / "smoke.py").unlink()
    with pytest.raises(ConfigError) as err:
        ml.check_bundle(bundle)
    assert "scripts.smoke but scripts/smoke.py is missing" in str(err.value)
    assert "'0' is 'normal'; name it 'background'" in str(err.value)


def test_prepare_app_copies_sample_app_and_bundles(tmp_path: Path) -> None:
    venv = tmp_path / "venv"  # a fake venv holding only the sample app: prepare_app copies, it runs nothing
    (venv / ml.SAMPLE_APP / "lib" / "infers").mkdir(parents=True)
    (venv / ml.SAMPLE_APP / "main.py").write_text("# app\n" + "".join(old for old, _ in ml.APP_IMPORTS))
    b2, b3 = smoke.make_bundle_2d(tmp_path / "b"), smoke.make_bundle_3d(tmp_path / "b")
    (b2 / "eval").mkdir()
    (b2 / "eval" / "junk.png").write_bytes(b"x")
    app = ml.prepare_app([b2, b3], tmp_path / "work", venv)
    assert app == tmp_path / "work" / "app"
    assert (app / "main.py").read_text() == "# app\n" + "".join(new for _, new in ml.APP_IMPORTS)
    assert (app / "lib" / "infers" / "sum_monai_bundle.py").read_text() == ml.APP_INFER_MODULE
    for target, source in ml.APP_MODULES.items():  # checked uploads, guarded training, tracking
        assert (app / target).read_text() == (Path(ml.__file__).parent / "app_lib" / source).read_text()
    for b in (b2, b3):
        copy = app / "model" / b.name
        assert (copy / "models" / "model.pt").read_bytes() == (b / "models" / "model.pt").read_bytes()
        assert (copy / "scripts" / "smoke.py").is_file()
    assert not (app / "model" / b2.name / "eval").exists()
    with pytest.raises(ConfigError, match="share a folder name"):
        ml.prepare_app([b2, b2], tmp_path / "work", venv)
    # weights trained in the previous app are kept, not lost, when the app is prepared again
    (copy / "models" / "model.pt").write_bytes(b"trained")
    ml.prepare_app([b2, b3], tmp_path / "work", venv)
    kept = list((tmp_path / "work" / "trained").rglob("model.pt"))
    assert [k.read_bytes() for k in kept] == [b"trained"] and kept[0].parts[-3] == b3.name
    assert (copy / "models" / "model.pt").read_bytes() == (b3 / "models" / "model.pt").read_bytes()
    (venv / ml.SAMPLE_APP / "main.py").write_text("# another MONAI Label\n" + ml.APP_IMPORT[0])
    with pytest.raises(ConfigError, match=r"no longer has `from monailabel\.interfaces\.app import MONAILabelApp`"):
        ml.prepare_app([b2], tmp_path / "work", venv)
    with pytest.raises(ConfigError, match="sample app not found"):
        ml.prepare_app([b2], tmp_path / "work", tmp_path / "nowhere")


def test_server_command_is_offline_and_local(tmp_path: Path) -> None:
    cmd = ml.server_command(tmp_path / "v", tmp_path / "app", tmp_path / "s", ["a", "b"], port=8123)
    assert cmd[:4] == [str(tmp_path / "v" / "bin" / "python"), "-m", "monailabel.main", "start_server"]
    args = dict(zip(cmd[4::2], cmd[5::2], strict=False))
    assert args["--host"] == "127.0.0.1" and args["--port"] == "8123"
    confs = {cmd[i + 1]: cmd[i + 2] for i, c in enumerate(cmd) if c == "--conf"}
    assert confs == {"models": "a,b", "zoo_source": "github", "sam2": "false", "skip_trainers": "true",
                     "preload": "false"}  # fmt: skip
    train = ml.server_command("v", "a", "s", ["a"], train=True)
    assert train[train.index("skip_trainers") + 1] == "false"
    tracked = ml.server_command("v", "a", "s", ["a"], train=True, tracking_uri="http://127.0.0.1:5000")
    assert tracked[-3:] == ["--conf", "tracking_uri", "http://127.0.0.1:5000"]


def test_cli_reports_missing_env(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = smoke.make_bundle_2d(tmp_path)
    status = main(["monailabel", "serve", "--bundle", str(bundle), "--venv", str(tmp_path / "none"),
                   "--workdir", str(tmp_path / "w")])  # fmt: skip
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "sum-monai monailabel setup" in err and "Traceback" not in err
    with pytest.raises(ConfigError, match=r"monailabel setup --venv"):
        ml.check_env(tmp_path / "none")


def test_cli_check_prints_what_is_served(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = smoke.make_bundle_3d(tmp_path)
    assert main(["monailabel", "check", "--bundle", str(bundle)]) == 0
    assert capsys.readouterr().out.strip() == "smoke_seg_3d: 3D, labels tumour=1, weights model.pt"


# ----------------------------------------------------------------------------------------------
# Slow: a real server
# ----------------------------------------------------------------------------------------------


def local_prediction(bundle: Path, image: Path, dims: int, in_ch: int) -> np.ndarray:
    """The bundle's own prediction: its inference.json transforms and inferer, run here with MONAI."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(bundle / "configs" / "inference.json")
    parser["bundle_root"] = str(bundle)
    pre, inferer, post = (
        parser.get_parsed_content(k) for k in ("preprocessing", "inferer", "postprocessing")
    )
    net = smoke.network(dims, in_ch)
    net.load_state_dict(torch.load(bundle / "models" / "model.pt", map_location="cpu"))
    net.eval()
    data = pre({"image": str(image)})
    with torch.no_grad():
        data["pred"] = inferer(data["image"][None], net)[0]
    return np.asarray(post(data)["pred"]).squeeze()


def infer(url: str, model: str, image: Path, out: Path) -> Path:
    """POST /infer/{model} with the image as upload; save the returned mask file as ``out``."""
    with image.open("rb") as f:
        resp = requests.post(f"{url}/infer/{model}", params={"output": "image"}, files={"file": (image.name, f)},
                             data={"params": "{}"}, timeout=300)  # fmt: skip
    assert resp.status_code == 200, resp.text[:500]
    out.write_bytes(resp.content)
    return out


@contextlib.contextmanager
def running_server(
    root: Path, timings: dict[str, float], *args: Any, **kwargs: Any
) -> Iterator[tuple[ml.MonaiLabelServer, dict[str, Any]]]:
    """Start ``MonaiLabelServer(*args, **kwargs)`` logging to ``root/server.log``; yield it and ``/info``.

    A server that never becomes ready fails the test with the end of its log; it is always stopped.
    """
    with (root / "server.log").open("w") as log:
        server = ml.MonaiLabelServer(*args, log=log, env={"OMP_NUM_THREADS": "1"}, **kwargs)
        start = time.monotonic()
        server.start()
        try:
            try:
                info = server.wait_ready(timeout=300)
            except ConfigError as err:
                log.flush()
                pytest.fail(f"{err}\n--- server log ---\n{(root / 'server.log').read_text()[-4000:]}")
            timings["server_ready"] = time.monotonic() - start
            yield server, info
        finally:
            server.stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two smoke bundles served from one app, training on; yields paths, the server and timings."""
    timings: dict[str, float] = {}
    start = time.monotonic()
    venv = ml.setup_env(ml.default_venv())
    timings["setup_env"] = time.monotonic() - start
    root = tmp_path_factory.mktemp("monailabel")
    bundles = {
        "2d": smoke.make_bundle_2d(root / "bundles", train=True),
        "3d": smoke.make_bundle_3d(root / "bundles"),
    }
    smoke.write_png_studies(root / "studies")
    inputs = {
        "2d": smoke.write_png(root / "in" / "us.png"),
        "3d": smoke.write_nifti(root / "in" / "mri.nii.gz"),
    }
    app = ml.prepare_app(bundles.values(), root / "work", venv)
    with running_server(root, timings, venv, app, root / "studies", [b.name for b in bundles.values()],
                        train=True) as (server, info):  # fmt: skip
        try:
            yield {"server": server, "info": info, "bundles": bundles, "inputs": inputs, "app": app, "root": root,
                   "timings": timings}  # fmt: skip
        finally:
            print("\nMONAI Label timings (s):", {k: round(v, 1) for k, v in timings.items()})


@pytest.mark.slow
def test_info_lists_both_models(served: dict[str, Any]) -> None:
    info = served["info"]
    models = info["models"]
    assert set(models) == {"smoke_seg_2d", "smoke_seg_3d"}
    assert (models["smoke_seg_2d"]["dimension"], models["smoke_seg_2d"]["labels"]) == (2, {"lesion": 1})
    assert (models["smoke_seg_3d"]["dimension"], models["smoke_seg_3d"]["labels"]) == (3, {"tumour": 1})
    assert models["smoke_seg_2d"]["type"] == "segmentation"
    assert set(info["trainers"]) == {"smoke_seg_2d"}  # the 3D bundle has no train.json
    assert info["datastore"]["total"] == 4 and info["datastore"]["completed"] == 4
    assert "sam_2d" not in models  # SAM2 would download weights


@pytest.mark.slow
def test_infer_2d_png(served: dict[str, Any]) -> None:
    image, bundle = served["inputs"]["2d"], served["bundles"]["2d"]
    start = time.monotonic()
    mask = infer(served["server"].url, "smoke_seg_2d", image, served["root"] / "mask_2d.png")
    served["timings"]["infer_2d"] = time.monotonic() - start
    with Image.open(mask) as m, Image.open(image) as im:
        assert m.format == "PNG" and m.mode == "L"
        assert m.size == im.size == (50, 37)
        served_mask = np.asarray(m)
    assert set(np.unique(served_mask)) == {0, 1}
    # (W, H) array of the bundle vs the (H, W) rows of the PNG
    expected = local_prediction(bundle, image, dims=2, in_ch=1).T
    assert expected.shape == served_mask.shape
    assert np.mean(expected == served_mask) > 0.999


@pytest.mark.slow
def test_infer_3d_nifti(served: dict[str, Any]) -> None:
    image, bundle = served["inputs"]["3d"], served["bundles"]["3d"]
    start = time.monotonic()
    mask = infer(served["server"].url, "smoke_seg_3d", image, served["root"] / "mask_3d.nii.gz")
    served["timings"]["infer_3d"] = time.monotonic() - start
    out, src = nib.load(mask), nib.load(image)
    assert out.shape == src.shape[:3] == (40, 36, 20)
    np.testing.assert_allclose(out.affine, src.affine, atol=1e-4)
    served_mask = np.asarray(out.dataobj)
    assert set(np.unique(served_mask)) == {0, 1}
    expected = local_prediction(bundle, image, dims=3, in_ch=2)
    assert expected.shape == served_mask.shape
    assert np.mean(expected == served_mask) > 0.999


@pytest.mark.slow
def test_train_offline_then_infer(served: dict[str, Any]) -> None:
    url, app, bundle = served["server"].url, served["app"], served["bundles"]["2d"]
    weights = app / "model" / "smoke_seg_2d" / "models" / "model.pt"
    before = weights.read_bytes()
    start = time.monotonic()
    resp = requests.post(f"{url}/train/smoke_seg_2d", params={"run_sync": "true"},
                         json={"max_epochs": 2, "val_split": 0.25, "device": "cpu", "multi_gpu": False}, timeout=300)  # fmt: skip
    served["timings"]["train_2d"] = time.monotonic() - start
    assert resp.status_code == 200, resp.text[:500]
    after = torch.load(weights, map_location="cpu")
    state = after.get("model", after)
    original = torch.load(bundle / "models" / "model.pt", map_location="cpu")
    assert set(state) == set(original)
    assert any(not torch.equal(state[k], original[k]) for k in original), (
        "training did not change the weights"
    )
    assert weights.read_bytes() != before
    assert (bundle / "models" / "model.pt").read_bytes() == before  # the repository's bundle is untouched
    mask = infer(url, "smoke_seg_2d", served["inputs"]["2d"], served["root"] / "mask_2d_trained.png")
    with Image.open(mask) as m:
        assert m.size == (50, 37) and set(np.unique(np.asarray(m))) <= {0, 1}


@pytest.mark.slow
def test_server_stops_cleanly(served: dict[str, Any]) -> None:
    server = served["server"]
    assert server.stop() == 0
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{server.url}/info/", timeout=5)


@pytest.mark.slow
def test_env_check_finds_imports_and_weights_the_venv_cannot_use(tmp_path: Path) -> None:
    """What MONAI Label would only show as HTTP 500 (imports) or a silently random network (weights)."""
    venv = ml.setup_env(ml.default_venv())
    good = smoke.make_bundle_3d(tmp_path / "good")
    pydicom3 = smoke.make_bundle_2d(tmp_path / "pydicom3")
    script = pydicom3 / "scripts" / "smoke.py"
    script.write_text("from pydicom.pixels import apply_voi  # pydicom 3 only\n" + script.read_text())
    wrong = smoke.make_bundle_2d(tmp_path / "wrong")
    torch.save(smoke.network(2, 2).state_dict(), wrong / "models" / "model.pt")  # 2 input channels, not 1
    found = ml.env_problems([good, pydicom3, wrong], venv)
    assert found[good] == []
    # the 2D smoke bundle's scripts build only its network (MONAI Label would drop it from /info/)
    assert found[pydicom3] == [
        "network_def with models/model.pt: ModuleNotFoundError: No module named 'pydicom.pixels' "
        "(scripts/smoke.py:1)"
    ]
    assert len(found[wrong]) == 1 and found[wrong][0].startswith(
        "network_def with models/model.pt: RuntimeError"
    )
    assert "size mismatch" in found[wrong][0]
    with pytest.raises(ConfigError, match=r"smoke_seg_2d: .*pydicom\.pixels"):
        ml.check_bundles_in_env([good, pydicom3], venv)


# ----------------------------------------------------------------------------------------------
# Slow: the real bundles, trained briefly on phantoms, in a real server
# ----------------------------------------------------------------------------------------------

#: Short training runs (64 px images, 32 x 32 x 16 patches, narrow networks, a high learning rate)
#: long enough for masks that are not constant, so that agreeing with ``sum-monai predict`` means
#: something (mammography needs large lesions and 8 epochs for that). The packaged bundles carry
#: these overrides in their configs.
REAL_RUNS: dict[str, dict[str, Any]] = {
    "breast_us_seg_2d": {
        "phantoms": ("us", 16, {"size": (96, 128)}),
        "epochs": 3,
        "overrides": {"image_size": 64, "network_def#channels": [8, 16, 32, 64, 128], "batch_size": 4,
                      "val_interval": 1, "learning_rate": 0.01},
    },
    "breast_mri_seg_3d": {
        "phantoms": ("mri", 4, {"size": (64, 48, 24), "format": "nifti"}),
        "epochs": 2,
        "overrides": {"roi_size": [32, 32, 16], "pixdim": [2.0, 2.0, 4.0], "network_def#channels": [8, 16, 32, 64],
                      "val_interval": 1, "num_samples": 1, "learning_rate": 0.01},
    },
    "mammo_seg_2d": {
        "phantoms": ("mammo", 8, {"size": (192, 128), "lesion_size": (0.15, 0.25)}),
        "epochs": 8,
        # the shipped operating point (lesion probability 0.99, chosen by the mini-MIAS CV) is for the
        # trained ensemble; 8 phantom epochs are not that confident, so their masks would be empty
        "overrides": {"image_size": 64, "network_def#channels": [8, 16, 32, 64, 128], "batch_size": 2,
                      "val_interval": 1, "learning_rate": 0.01, "lesion_threshold": 0.5},
    },
}  # fmt: skip
def write_real_inputs(phantoms: dict[str, Path], out: Path) -> dict[str, Path]:
    """One input per served format: ultrasound PNG, MRI 4D NIfTI, mammogram as PNG and as DICOM.

    - ``us.png``: a malignant phantom (128 x 96, not square, so swapped axes would show).
    - ``mri.nii.gz``: the two DCE phases of ``breast_0001`` (nnU-Net ``_0000`` / ``_0001`` files)
      stacked on a 4th axis with their affine, because ``/infer`` takes one file.
    - ``mammo.dcm``: the first phantom DICOM MG with a lesion; ``mammo.png``: the same image as presented (modality and
      VOI LUT), scaled to 8 bits: what a PNG export of a mammogram looks like.
    """
    out.mkdir(parents=True)
    shutil.copy(sorted((phantoms["us"] / "malignant").glob("malignant (*).png"))[0], out / "us.png")
    pre, post = (nib.load(phantoms["mri"] / "imagesTr" / f"breast_0001_{c:04d}.nii.gz") for c in (0, 1))
    volume = np.stack([np.asarray(pre.dataobj), np.asarray(post.dataobj)], axis=-1)
    nib.save(nib.Nifti1Image(volume, pre.affine), out / "mri.nii.gz")
    import pydicom

    dicom = next(  # the first image with a lesion
        d
        for d in sorted((phantoms["mammo"] / "images").glob("*.dcm"))
        if read_mask(phantoms["mammo"] / "masks" / f"{d.stem}_mask.png").any()
    )
    shutil.copy(dicom, out / "mammo.dcm")
    shown = presented_image(pydicom.dcmread(dicom))
    scaled = 255 * (shown - shown.min()) / max(float(shown.max() - shown.min()), 1e-6)
    Image.fromarray(scaled.round().astype(np.uint8), mode="L").save(out / "mammo.png")
    return {
        "us": out / "us.png",
        "mri": out / "mri.nii.gz",
        "mammo_png": out / "mammo.png",
        "mammo_dcm": out / "mammo.dcm",
    }


def read_mask(path: Path) -> np.ndarray:
    """A mask file as an array: PNG rows x columns, NIfTI voxels, DICOM pixel data."""
    if path.name.endswith((".nii", ".nii.gz")):
        return np.asarray(nib.load(path).dataobj)
    if path.suffix == ".dcm":
        import pydicom

        return np.asarray(pydicom.dcmread(path).pixel_array)
    with Image.open(path) as im:
        return np.asarray(im)


@pytest.fixture(scope="module")
def real_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The three real bundles trained briefly, predicted locally, then served from one app.

    Yields the server, ``/info``, the inputs, the local predictions (``sum_monai.predict``) per
    input, the in-venv build problems of the trained bundles as packaged, and timings.
    """
    timings: dict[str, float] = {}
    results: list[str] = []
    root = tmp_path_factory.mktemp("monailabel_real")
    start = time.monotonic()
    venv = ml.setup_env(ml.default_venv())
    timings["setup_env"] = time.monotonic() - start
    phantoms, trained = {}, {}
    for name, run in REAL_RUNS.items():
        modality, n, settings = run["phantoms"]
        start = time.monotonic()
        phantoms[modality] = root / "phantoms" / modality
        generate(modality, n, phantoms[modality], seed=1, progress=False, **settings)
        result = train(name, data=phantoms[modality], output=root / "runs" / name, epochs=run["epochs"],
                       tracking_uri=f"sqlite:///{root}/mlruns.db", overrides=run["overrides"])  # fmt: skip
        trained[name] = result.trained_bundle
        timings[f"train_{name}"] = time.monotonic() - start
    start = time.monotonic()
    problems = ml.env_problems(trained.values(), venv)
    timings["env_check"] = time.monotonic() - start
    served_bundles = dict(trained)
    inputs = write_real_inputs(phantoms, root / "in")
    local: dict[str, Path] = {}
    for key, model in (("us", "breast_us_seg_2d"), ("mri", "breast_mri_seg_3d"), ("mammo_png", "mammo_seg_2d"),
                       ("mammo_dcm", "mammo_seg_2d")):  # fmt: skip
        start = time.monotonic()
        report = predict(trained[model], inputs[key], root / "predict" / key, progress=False)
        timings[f"predict_{key}"] = time.monotonic() - start
        assert report.exit_status == 0, report.failed
        local[key] = next(
            p for p in (root / "predict" / key).iterdir() if "_seg." in p.name and p.suffix != ".dcm"
        )
    app = ml.prepare_app(served_bundles.values(), root / "work", venv)
    with running_server(root, timings, venv, app, root / "studies", list(served_bundles)) as (server, info):
        try:
            yield {"server": server, "info": info, "inputs": inputs, "local": local, "problems": problems,
                   "trained": trained, "root": root, "timings": timings, "results": results}  # fmt: skip
        finally:
            print("\nreal bundles in MONAI Label:\n  " + "\n  ".join(results))
            print("timings (s):", {k: round(v, 1) for k, v in timings.items()})


def infer_real(
    served: dict[str, Any], model: str, key: str, params: dict[str, Any] | None = None
) -> tuple[np.ndarray, Path]:
    """POST the input ``key`` to /infer/{model}; return the mask array and file, and record the timing."""
    image = served["inputs"][key]
    start = time.monotonic()
    with image.open("rb") as f:
        resp = requests.post(f"{served['server'].url}/infer/{model}", params={"output": "image"},
                             files={"file": (image.name, f)}, data={"params": json.dumps(params or {})}, timeout=600)  # fmt: skip
    seconds = time.monotonic() - start
    assert resp.status_code == 200, resp.text[:500]
    ext = "".join(Path(resp.headers["content-disposition"].split("filename=")[-1].strip('"')).suffixes)
    out = served["root"] / "served" / f"{key}_{len(list(served['root'].glob('served/*')))}{ext}"
    out.parent.mkdir(exist_ok=True)
    out.write_bytes(resp.content)
    mask = read_mask(out)
    values = dict(zip(*(v.tolist() for v in np.unique(mask, return_counts=True)), strict=True))
    served["results"].append(f"{model} {image.name} -> {out.suffix or ext} {mask.shape} {mask.dtype} values {values} "
                             f"in {seconds:.2f} s")  # fmt: skip
    served["timings"][f"infer_{key}{ext}"] = seconds
    return mask, out


def agreement(served: dict[str, Any], key: str, mask: np.ndarray) -> float:
    """Share of pixels where the served mask equals ``sum-monai predict``'s; recorded for the report."""
    local = read_mask(served["local"][key])
    assert local.shape == mask.shape
    share = float(np.mean(local == mask))
    served["results"].append(f"  agreement with sum-monai predict ({served['local'][key].name}): {share:.4%}")
    return share


@pytest.mark.slow
def test_real_bundles_build_in_monailabel_env(real_served: dict[str, Any]) -> None:
    found = {path.name: p for path, p in real_served["problems"].items()}
    # mammo's scripts/mammo.py falls back to pydicom 2's pixel_data_handlers in MONAI Label's venv
    assert found == {"breast_us_seg_2d": [], "breast_mri_seg_3d": [], "mammo_seg_2d": []}


@pytest.mark.slow
def test_real_info_lists_the_bundles(real_served: dict[str, Any]) -> None:
    models = real_served["info"]["models"]
    assert set(models) == {"breast_us_seg_2d", "breast_mri_seg_3d", "mammo_seg_2d"}
    got = {name: (m["type"], m["dimension"], m["labels"]) for name, m in models.items()}
    assert got == {
        "breast_us_seg_2d": ("segmentation", 2, {"lesion": 1}),
        "breast_mri_seg_3d": ("segmentation", 3, {"tumour": 1}),
        "mammo_seg_2d": ("segmentation", 2, {"benign": 1, "malignant": 2}),
    }
    assert "sam_2d" not in models and real_served["info"]["trainers"] == {}
    real_served["results"].append(f"GET /info/ models: {json.dumps(got)}")


@pytest.mark.slow
def test_real_infer_ultrasound_png(real_served: dict[str, Any]) -> None:
    mask, out = infer_real(real_served, "breast_us_seg_2d", "us")
    with Image.open(out) as m, Image.open(real_served["inputs"]["us"]) as im:
        assert m.format == "PNG" and m.mode == "L" and m.size == im.size == (128, 96)
    assert set(np.unique(mask)) == {0, 1}, "a constant mask would make the agreement below meaningless"
    assert agreement(real_served, "us", mask) >= 0.999


@pytest.mark.slow
def test_real_infer_mri_4d_nifti(real_served: dict[str, Any]) -> None:
    mask, out = infer_real(real_served, "breast_mri_seg_3d", "mri")
    src = nib.load(real_served["inputs"]["mri"])
    assert src.shape == (64, 48, 24, 2) and mask.shape == src.shape[:3]
    np.testing.assert_allclose(nib.load(out).affine, src.affine, atol=1e-4)
    np.testing.assert_allclose(nib.load(real_served["local"]["mri"]).affine, src.affine, atol=1e-4)
    assert set(np.unique(mask)) == {0, 1}, "a constant mask would make the agreement below meaningless"
    assert agreement(real_served, "mri", mask) >= 0.999


@pytest.mark.slow
@pytest.mark.parametrize(
    ("key", "params", "suffix"),
    [
        ("mammo_png", {}, ".png"),
        ("mammo_dcm", {"result_extension": ".png"}, ".png"),
        ("mammo_dcm", {}, ".dcm"),
    ],
    ids=["png", "dicom-to-png", "dicom-to-dicom"],
)
def test_real_infer_mammogram(
    real_served: dict[str, Any], key: str, params: dict[str, Any], suffix: str
) -> None:
    """A mammogram as PNG export or as the DICOM itself.

    Without ``result_extension`` a DICOM upload comes back as a DICOM Secondary Capture written by
    ITK (new UIDs, no patient or study): readable, but not a DICOM SEG of the image.
    """
    mask, out = infer_real(real_served, "mammo_seg_2d", key, params)
    assert out.suffix == suffix
    assert mask.shape == (192, 128) and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 1, 2} and len(np.unique(mask)) >= 2, (
        "values outside the labels, or constant"
    )
    assert agreement(real_served, key, mask) >= 0.999


def test_smoke_helpers_are_deterministic(tmp_path: Path) -> None:
    a = smoke.write_nifti(tmp_path / "a.nii.gz")
    b = smoke.write_nifti(tmp_path / "b.nii.gz")
    np.testing.assert_array_equal(nib.load(a).get_fdata(), nib.load(b).get_fdata())
    assert nib.load(a).shape == (40, 36, 20, 2)
