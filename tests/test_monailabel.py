"""Serving bundles through a real MONAI Label server, offline (sum_monai.deploy.monailabel).

The fast tests check the bundle checks and the command line without a server. The slow ones
(``make test-slow``) create or reuse the MONAI Label venv (``sum-monai monailabel setup``; ~4 min
the first time), serve the two smoke bundles of :mod:`monailabel_smoke` from one app on 127.0.0.1
and check what comes back against the bundles' own prediction computed here with MONAI.
"""

from __future__ import annotations

import json
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
    (venv / ml.SAMPLE_APP / "main.py").write_text(f"# app\n{ml.APP_IMPORT[0]}")
    b2, b3 = smoke.make_bundle_2d(tmp_path / "b"), smoke.make_bundle_3d(tmp_path / "b")
    (b2 / "eval").mkdir()
    (b2 / "eval" / "junk.png").write_bytes(b"x")
    app = ml.prepare_app([b2, b3], tmp_path / "work", venv)
    assert app == tmp_path / "work" / "app"
    assert (app / "main.py").read_text() == f"# app\n{ml.APP_IMPORT[1]}"
    assert (app / "lib" / "infers" / "sum_monai_bundle.py").read_text() == ml.APP_INFER_MODULE
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
    (venv / ml.SAMPLE_APP / "main.py").write_text("# another MONAI Label\n")
    with pytest.raises(ConfigError, match="no longer imports BundleInferTask"):
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
    log = (root / "server.log").open("w")
    server = ml.MonaiLabelServer(venv, app, root / "studies", [b.name for b in bundles.values()], train=True,
                                 log=log, env={"OMP_NUM_THREADS": "1"})  # fmt: skip
    start = time.monotonic()
    server.start()
    try:
        info = server.wait_ready(timeout=300)
        timings["server_ready"] = time.monotonic() - start
        yield {"server": server, "info": info, "bundles": bundles, "inputs": inputs, "app": app, "root": root,
               "timings": timings}  # fmt: skip
    except ConfigError as err:
        log.flush()
        pytest.fail(f"{err}\n--- server log ---\n{(root / 'server.log').read_text()[-4000:]}")
    finally:
        server.stop()
        log.close()
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


def test_smoke_helpers_are_deterministic(tmp_path: Path) -> None:
    a = smoke.write_nifti(tmp_path / "a.nii.gz")
    b = smoke.write_nifti(tmp_path / "b.nii.gz")
    np.testing.assert_array_equal(nib.load(a).get_fdata(), nib.load(b).get_fdata())
    assert nib.load(a).shape == (40, 36, 20, 2)
