"""What a careful but hostile user tried (issue 11): every case ends in one clear message.

Each test is one case of the issue: a silent wrong answer, a crash with a traceback, or state
left half-written. The expected outcome is always the same: one message naming the file and the
problem (exit status 2 for usage and data, 1 for a partial prediction), no traceback, and nothing
half-written or inconsistent. Everything is tiny (32-px phantoms, at most one epoch) so the whole
file runs in about a minute.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import mlflow
import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from PIL import Image
from test_datalists import make_busi, make_msd
from test_io_read import write_dicom_mg, write_dicom_series, write_nifti, write_png

from sum_monai.bundle.locate import Bundle
from sum_monai.bundle.run import create_workflow
from sum_monai.cli import main
from sum_monai.datalists.build import build_datalist
from sum_monai.errors import ConfigError, DataError, DataErrors
from sum_monai.io.read import read_image

CPU = "$torch.device('cpu')"
SMALL_US = {"image_size": 32, "batch_size": 4, "val_interval": 1}


# -- helpers -----------------------------------------------------------------------------------------


def problems(exc: pytest.ExceptionInfo) -> list[DataError]:
    err = exc.value
    return list(err.errors) if isinstance(err, DataErrors) else [err]


def random_weights(bundle_name: str, out: Path, overrides: dict | None = None) -> Path:
    """Seeded random-init weights of a bundle's network (enough to build a predictor)."""
    parser = create_workflow(Bundle.find(bundle_name), "inference", {**(overrides or {}), "device": CPU}).parser
    torch.manual_seed(0)
    path = out / f"{bundle_name}.pt"
    torch.save(parser.get_parsed_content("network_def").state_dict(), path)
    return path


def predict_cli(bundle: str, inputs: Path, out: Path, weights: Path, *extra: str) -> int:
    return main(["predict", "--bundle", bundle, "--weights", str(weights), "--input", str(inputs),
                 "--output", str(out), "--device", "cpu", "--no-progress", *extra])  # fmt: skip


def records(out: Path) -> dict[str, dict]:
    import csv

    with (out / "predictions.csv").open() as f:
        return {r["case"]: r for r in csv.DictReader(f)}


def texture(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.kron(rng.integers(0, 256, (rows // 4 + 1, cols // 4 + 1)), np.ones((4, 4)))[:rows, :cols]
    img[rows // 3 : rows // 2, cols // 3 : cols // 2] = 250  # a bright "lesion"
    return img.astype(np.uint8)


def save_nifti_sform(path: Path, volume: np.ndarray, affine: np.ndarray) -> Path:
    """A NIfTI whose only geometry is ``affine`` as sform (nibabel refuses a singular qform)."""
    header = nib.Nifti1Header()
    header.set_data_shape(volume.shape)
    header.set_data_dtype(volume.dtype)
    header.set_sform(affine, code=1)
    header["qform_code"] = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(volume, None, header=header), path)
    return path


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A valid PNG signature and IHDR claiming ``width`` x ``height``, with a tiny IDAT (a bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def us_phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sum_monai.phantoms import generate

    out = tmp_path_factory.mktemp("faults") / "us"
    generate("us", 10, out, seed=3, size=(64, 64), progress=False, overview=False)
    return out


@pytest.fixture(scope="module")
def us_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_weights("breast_us_seg_2d", tmp_path_factory.mktemp("w"), {"image_size": 32})


# ======================================================================= silent wrong results


@pytest.mark.parametrize("bundle_name", ["breast_us_seg_2d", "mammo_seg_2d"])
def test_16bit_and_palette_pngs_read_like_their_8bit_original(bundle_name: str, tmp_path: Path) -> None:
    """convert('L') turned a 16-bit PNG white: the bundle must see the same image whatever the PNG mode."""
    grey = texture(40, 48)
    paths = {
        "8-bit": write_png(tmp_path / "a8.png", grey),
        "16-bit": tmp_path / "a16.png",
        "palette": tmp_path / "ap.png",
        "RGB": write_png(tmp_path / "argb.png", np.stack([grey] * 3, axis=-1)),
    }
    Image.fromarray(grey.astype(np.uint16) * 257).save(paths["16-bit"])
    Image.fromarray(grey).convert("P").save(paths["palette"])
    assert Image.open(paths["16-bit"]).mode == "I;16"
    pre = create_workflow(Bundle.find(bundle_name), "inference", {"image_size": 32, "device": CPU}).parser
    pre = pre.get_parsed_content("preprocessing")
    seen = {k: pre({"image": str(p)})["image"] for k, p in paths.items()}
    assert float(seen["8-bit"].std()) > 0.1
    for kind in ("16-bit", "palette", "RGB"):
        torch.testing.assert_close(seen[kind], seen["8-bit"], atol=1e-3, rtol=0, msg=kind)
    # the package's validation reads the values the file stores
    assert read_image(paths["16-bit"]).numpy().max() == int(grey.max()) * 257
    np.testing.assert_array_equal(read_image(paths["palette"]).numpy()[0], grey.T)


def test_degenerate_nifti_affine_is_one_clear_error(tmp_path: Path) -> None:
    """A zero column gave 1 mm voxels in predict, a zero affine 'Unable to find out axis 0.0'."""
    vol = np.random.default_rng(0).random((20, 20, 16)).astype(np.float32)
    column = np.diag([0.8, 0.8, 2.0, 1.0])
    column[:, 2] = 0.0
    cases = {"column": column, "zero": np.zeros((4, 4))}
    for name, affine in cases.items():
        path = save_nifti_sform(tmp_path / f"{name}.nii.gz", vol, affine)
        with pytest.raises(DataError, match="degenerate geometry") as exc:
            read_image(path)
        assert exc.value.path == str(path)
    # datalist / validate / train (they all open files through read_image)
    root = make_msd(tmp_path / "msd", n=4)
    bad = root / "imagesTr" / "case_001_0001.nii.gz"
    save_nifti_sform(bad, np.asarray(nib.load(bad).dataobj), column)
    with pytest.raises(DataErrors) as exc:
        build_datalist("msd", root, tmp_path / "dl.json", progress=False)
    assert [e.path for e in problems(exc)] == [str(bad)] and "zero column" in str(exc.value)
    # predict: the case is reported, nothing written for it
    weights = random_weights("breast_mri_seg_3d", tmp_path, {"roi_size": [16, 16, 16]})
    inputs = tmp_path / "in"
    inputs.mkdir()
    for c in (0, 1):
        save_nifti_sform(inputs / f"p1_000{c}.nii.gz", vol, column)
    out = tmp_path / "out"
    assert predict_cli("breast_mri_seg_3d", inputs, out, weights, "--set", "roi_size=[16,16,16]") == 1
    row = records(out)["p1"]
    assert row["status"] == "failed" and "p1_0000.nii.gz: degenerate geometry" in row["error"]
    assert not list(out.glob("p1_seg*"))


def mg_dicom(path: Path, modality: str = "MG") -> Path:
    pixels = (texture(64, 64).astype(np.uint16) * 16)
    write_dicom_mg(path, pixels, patient_id="P1")
    ds = pydicom.dcmread(path)
    ds.Modality = modality
    ds.save_as(path, enforce_file_format=True)
    return path


def test_each_bundle_checks_the_dicom_modality_it_was_trained_for(tmp_path: Path, us_weights: Path) -> None:
    """A CT got a DICOM SEG from the mammography model; an MG gave 'cannot find a suitable reader'."""
    ct = mg_dicom(tmp_path / "in_ct" / "slice.dcm", "CT")
    mg = mg_dicom(tmp_path / "in_mg" / "view.dcm", "MG")
    weights = random_weights("mammo_seg_2d", tmp_path, {"image_size": 64})
    out = tmp_path / "out_mammo"
    assert predict_cli("mammo_seg_2d", ct.parent, out, weights, "--set", "image_size=64") == 1
    error = records(out)["slice"]["error"]
    assert error == f"{ct}: DICOM Modality is CT (CT), but this model was trained on MG (mammography) images"
    assert not list(out.glob("slice_seg*"))
    out = tmp_path / "out_us"
    assert predict_cli("breast_us_seg_2d", mg.parent, out, us_weights, "--set", "image_size=32") == 1
    assert "DICOM Modality is MG (mammography), but this model was trained on US (ultrasound)" in records(out)["view"]["error"]
    # the bundle itself refuses (MONAI Label, monai.bundle run): the check is in its configs
    from sum_monai.bundle.scripts import import_bundle_scripts

    checks = import_bundle_scripts(Bundle.find("breast_mri_seg_3d").root, "checks")
    with pytest.raises(ValueError, match="Modality is CT"):
        checks.CheckModalityd("image", "MR")({"image": [str(ct.parent), str(ct.parent)]})


def test_mri_predict_refuses_nan_and_inf_like_the_datalist(tmp_path: Path) -> None:
    vol = np.random.default_rng(0).random((20, 20, 16)).astype(np.float32) * 100
    bad = vol.copy()
    bad[3, 4, 5] = np.nan
    bad[6, 7, 8] = np.inf
    inputs = tmp_path / "in"
    write_nifti(inputs / "p1_0000.nii.gz", bad)
    write_nifti(inputs / "p1_0001.nii.gz", vol)
    with pytest.raises(DataError, match="holds 1 NaN and 1 infinite values"):
        read_image(inputs / "p1_0000.nii.gz")
    weights = random_weights("breast_mri_seg_3d", tmp_path, {"roi_size": [16, 16, 16]})
    out = tmp_path / "out"
    assert predict_cli("breast_mri_seg_3d", inputs, out, weights, "--set", "roi_size=[16,16,16]") == 1
    assert records(out)["p1"]["error"] == f"{inputs / 'p1_0000.nii.gz'}: NIfTI volume holds 1 NaN and 1 infinite values"


def test_busi_second_mask_without_the_first_is_refused(tmp_path: Path) -> None:
    root = make_busi(tmp_path / "busi")
    first = root / "benign" / "benign (2)_mask.png"
    second = root / "benign" / "benign (2)_mask_1.png"
    first.rename(second)
    with pytest.raises(DataErrors) as exc:
        build_datalist("busi", root, tmp_path / "dl.json", progress=False)
    [err] = problems(exc)
    assert err.path == str(root / "benign" / "benign (2).png")
    assert "'benign (2)_mask.png' is missing" in err.problem and "_mask_1.png" in err.problem
    assert not (tmp_path / "dl.json").exists()


def test_training_refuses_a_datalist_without_any_lesion(tmp_path: Path) -> None:
    """It trained to 'best validation Dice 0.0000' and registered a model."""
    from sum_monai.workflows.train import train

    root = make_busi(tmp_path / "busi", {"normal": 8})
    dl = tmp_path / "dl.json"
    build_datalist("busi", root, dl, progress=False, test_frac=0.0, val_frac=0.25)
    with pytest.raises(DataError, match="no case of the 'training' split has a lesion") as exc:
        train("breast_us_seg_2d", data=dl, output=tmp_path / "run", epochs=1, overrides=SMALL_US,
              tracking_uri=f"sqlite:///{tmp_path / 'mlruns.db'}")  # fmt: skip
    assert exc.value.path == str(dl)
    assert not (tmp_path / "run").exists()


# ======================================================================= crashes and tracebacks


def test_train_and_evaluate_check_every_file_of_a_datalist_json(tmp_path: Path, us_phantoms: Path, us_weights: Path) -> None:
    """A zero-byte image in a datalist JSON aborted the process (SIGABRT, 176-line traceback)."""
    from sum_monai.workflows.evaluate import evaluate
    from sum_monai.workflows.train import train

    dl = tmp_path / "dl.json"
    build_datalist("busi", us_phantoms, dl, progress=False)
    content = json.loads(dl.read_text())
    bad = Path(os.path.normpath(tmp_path / content["test"][0]["image"]))
    data = tmp_path / "data"
    import shutil

    shutil.copytree(us_phantoms, data)
    content = json.loads(dl.read_text().replace(os.path.relpath(us_phantoms, tmp_path), "data"))
    dl.write_text(json.dumps(content))
    bad = data / bad.relative_to(us_phantoms)
    bad.write_bytes(b"")
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    with pytest.raises(DataErrors) as exc:
        train("breast_us_seg_2d", data=dl, output=tmp_path / "run", epochs=1, overrides=SMALL_US, tracking_uri=uri)
    assert [e.path for e in problems(exc)] == [str(bad)] and "file is empty (0 bytes)" in str(exc.value)
    assert not (tmp_path / "run").exists()
    with pytest.raises(DataErrors) as exc:
        evaluate("breast_us_seg_2d", data=dl, weights=us_weights, output=tmp_path / "eval", overrides=SMALL_US,
                 tracking_uri=uri)  # fmt: skip
    assert [e.path for e in problems(exc)] == [str(bad)]
    assert not (tmp_path / "eval").exists()


def test_an_output_path_that_is_a_file_or_read_only_is_one_clear_error(
    tmp_path: Path, us_phantoms: Path, us_weights: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    commands = {
        "datalist": ["datalist", "busi", str(us_phantoms), "--out", str(blocker / "dl.json"), "--no-progress"],
        "predict": ["predict", "--bundle", "breast_us_seg_2d", "--weights", str(us_weights), "--input",
                    str(us_phantoms), "--output", str(blocker), "--no-progress", "--set", "image_size=32"],
        "train": ["train", "--bundle", "breast_us_seg_2d", "--data", str(us_phantoms), "--output", str(blocker),
                  "--epochs", "1", "--set", "val_interval=1", "--tracking-uri", uri],
        "evaluate": ["evaluate", "--bundle", "breast_us_seg_2d", "--data", str(us_phantoms), "--weights",
                     str(us_weights), "--output", str(blocker / "eval"), "--tracking-uri", uri, "--set", "image_size=32"],
    }  # fmt: skip
    for name, argv in commands.items():
        assert main(argv) == 2, name
        err = capsys.readouterr().err
        assert f"{blocker}: " in err and "is a file, not a folder" in err, (name, err)
        assert "Traceback" not in err
    assert blocker.read_text() == "not a folder"
    # read-only (simulated: the tests run as root, who may write anywhere)
    real_mkstemp = __import__("tempfile").mkstemp

    def denied(*args: object, **kwargs: object) -> object:
        if str(kwargs.get("dir", "")).startswith(str(tmp_path / "ro")):
            raise PermissionError(13, "Permission denied", str(kwargs["dir"]))
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr("tempfile.mkstemp", denied)
    (tmp_path / "ro").mkdir()
    assert main(["datalist", "busi", str(us_phantoms), "--out", str(tmp_path / "ro" / "dl.json"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'ro' / 'dl.json'}: cannot write here: Permission denied" in err
    assert list((tmp_path / "ro").iterdir()) == []


def test_a_1x1_png_is_refused_by_name(tmp_path: Path, us_weights: Path) -> None:
    """It failed with 'SaveImage cannot find a suitable writer'."""
    inputs = tmp_path / "in"
    tiny = write_png(inputs / "tiny.png", np.full((1, 1), 128, np.uint8))
    write_png(inputs / "ok.png", texture(32, 32))
    with pytest.raises(DataError, match=r"1x1 pixels is too small: at least 2 pixels per side") as exc:
        read_image(tiny)
    assert exc.value.path == str(tiny)
    out = tmp_path / "out"
    assert predict_cli("breast_us_seg_2d", inputs, out, us_weights, "--set", "image_size=32") == 1
    rows = records(out)
    assert rows["ok"]["status"] == "ok"
    assert rows["tiny"]["error"] == f"{tiny}: image of 1x1 pixels is too small: at least 2 pixels per side are needed"


def test_a_2d_nifti_given_to_the_3d_bundle_is_refused(tmp_path: Path) -> None:
    """It failed with 'Inputs must have 5 dimensions'."""
    inputs = tmp_path / "in"
    plane = np.random.default_rng(0).random((24, 24)).astype(np.float32)
    inputs.mkdir()
    for c in (0, 1):
        nib.save(nib.Nifti1Image(plane, np.eye(4)), inputs / f"p1_000{c}.nii.gz")
    weights = random_weights("breast_mri_seg_3d", tmp_path, {"roi_size": [16, 16, 16]})
    out = tmp_path / "out"
    assert predict_cli("breast_mri_seg_3d", inputs, out, weights, "--set", "roi_size=[16,16,16]") == 1
    assert records(out)["p1"]["error"] == (
        f"{inputs / 'p1_0000.nii.gz'}: is a 2D image of size (24, 24); breast_mri_seg_3d segments 3D volumes"
    )


def test_a_truncated_slice_of_a_dicom_series_is_named(tmp_path: Path) -> None:
    """It was reported as an affine mismatch of the whole case."""
    folder = write_dicom_series(tmp_path / "pre", np.ones((6, 12, 10), dtype=np.uint16))
    broken = sorted(folder.iterdir())[3]
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) - 100])
    with pytest.raises(DataError, match="broken slice of the DICOM series") as exc:
        read_image(folder)
    assert exc.value.path == str(broken)


def test_a_dicom_seg_failure_names_the_input_not_a_scratch_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import highdicom

    mg = mg_dicom(tmp_path / "in" / "view.dcm", "MG")
    weights = random_weights("mammo_seg_2d", tmp_path, {"image_size": 64})

    def refuse(*args: object, **kwargs: object) -> None:
        raise ValueError("source images lack an attribute")

    monkeypatch.setattr(highdicom.seg, "Segmentation", refuse)
    out = tmp_path / "out"
    assert predict_cli("mammo_seg_2d", mg.parent, out, weights, "--set", "image_size=64") == 1
    assert records(out)["view"]["error"] == (
        f"{mg}: cannot build a DICOM SEG for these source images: source images lack an attribute"
    )


def test_oversized_images_and_decompression_bombs_are_refused_before_decoding(tmp_path: Path) -> None:
    """A 12000x12000 PNG took 93 s and 12 GB."""
    import time

    from sum_monai.bundle.bundle_scripts.pil import MAX_PIXELS

    big = png_header_only(tmp_path / "big.png", 12000, 12000)
    bomb = png_header_only(tmp_path / "bomb.png", 30000, 30000)
    t0 = time.perf_counter()
    with pytest.raises(DataError, match=r"12000x12000 pixels \(144 M\) exceeds the limit of 67 M pixels") as exc:
        read_image(big)
    assert exc.value.path == str(big)
    with pytest.raises(DataError, match="exceeds the limit") as exc:
        read_image(bomb)
    assert time.perf_counter() - t0 < 5
    assert MAX_PIXELS == 8192 * 8192
    pre = create_workflow(Bundle.find("breast_us_seg_2d"), "inference", {"image_size": 32, "device": CPU}).parser
    with pytest.raises(RuntimeError) as exc:  # MONAI wraps the converter's error
        pre.get_parsed_content("preprocessing")({"image": str(big)})
    text, err = "", exc.value
    while err is not None:  # LoadImage reports the reader's error inside its own
        text, err = text + str(err), err.__cause__ or err.__context__
    assert f"{big}: image of 12000x12000 pixels (144 M) exceeds the limit" in text


def fake_run(run_dir: Path, uri: str, state: dict) -> None:
    """A run folder whose last.pt holds ``state`` (as a killed run leaves it).

    Its ``run.json`` is one of sum-monai before run bundles (recipe and settings mixed in
    ``overrides``), which loading brings up to date: the run's bundle is written from its recipe.
    """
    (run_dir / "models").mkdir(parents=True)
    torch.save(state, run_dir / "models" / "last.pt")
    record = {"bundle": str(Bundle.find("breast_us_seg_2d").root), "bundle_version": "0", "datalist": str(run_dir / "dl.json"),
              "run_name": "train-x", "tracking_uri": uri, "overrides": {**SMALL_US, "epochs": 2, "device": CPU}}  # fmt: skip
    (run_dir / "run.json").write_text(json.dumps(record))


def test_resume_with_a_last_pt_of_another_network_is_refused_before_mlflow(tmp_path: Path) -> None:
    """An 80-line traceback, and an orphan RUNNING MLflow run."""
    from monai.networks.nets import UNet

    from sum_monai.workflows.train import train

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    other = UNet(2, 1, 2, channels=(8, 16), strides=(2,)).state_dict()
    fake_run(tmp_path / "run", uri, {"network": other, "trainer": {"iteration": 2, "epoch_length": 2, "max_epochs": 2}})
    with pytest.raises(ConfigError, match=r"last\.pt: the weights do not fit the bundle.s network_def") as exc:
        train("breast_us_seg_2d", output=tmp_path / "run", resume=True, epochs=3)
    assert str(tmp_path / "run" / "models" / "last.pt") in str(exc.value)
    # the old record was brought up to date: its recipe is in the run's bundle, its device setting is
    # not, and the refused resume left it as it was (epochs 2, not the 3 asked for)
    source = json.loads(Bundle.find("breast_us_seg_2d").config("train.json").read_text())
    written = json.loads((tmp_path / "run" / "bundle" / "breast_us_seg_2d" / "configs" / "train.json").read_text())
    assert (written["image_size"], written["epochs"], written["device"]) == (32, 2, source["device"])
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("breast_us_seg_2d")
    assert exp is None or not client.search_runs([exp.experiment_id])


# ======================================================================= inconsistent state


def test_checkpoint_writes_killed_midway_leave_no_temporary_files(tmp_path: Path) -> None:
    """SIGKILL during a checkpoint write left tmp* files (up to 4.7 MB each) in models/."""
    code = f"""
import os, torch
from ignite.engine import Engine
from sum_monai.bundle.bundle_scripts.checkpoint import AtomicCheckpointSaver
net = torch.nn.Linear(2, 2)
engine = Engine(lambda e, b: None)
AtomicCheckpointSaver({str(tmp_path)!r}, {{"model": net}}, "last.pt").attach(engine)
engine.run([0], max_epochs=1)
real = torch.save
def killed(obj, f, *a, **k):
    real(obj, f, *a, **k)
    os._exit(9)  # as SIGKILL: no clean-up runs
torch.save = killed
engine.run([0], max_epochs=2)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))  # fmt: skip
    assert done.returncode == 9, done.stderr[-2000:]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert "last.pt" in left and len(left) == 2, left  # the killed write's temporary file
    from ignite.engine import Engine

    from sum_monai.bundle.bundle_scripts.checkpoint import AtomicCheckpointSaver

    net = torch.nn.Linear(2, 2)
    engine = Engine(lambda e, b: None)
    AtomicCheckpointSaver(str(tmp_path), {"model": net}, "last.pt").attach(engine)
    engine.run([0], max_epochs=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_a_resumed_run_logs_each_step_once(tmp_path: Path) -> None:
    """Killed between logging an epoch and checkpointing it, the resumed run logged that step twice."""
    from ignite.engine import Engine, Events

    from sum_monai.tracking.settings import ResumableMLFlowHandler

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"

    def run_epochs(done: int, last: int, value: float) -> None:
        """Epochs ``done + 1`` .. ``last`` of a trainer that checkpointed ``done`` epochs."""
        engine = Engine(lambda e, b: None)

        @engine.on(Events.EPOCH_COMPLETED)
        def _metrics(e: Engine) -> None:  # registered first: runs before the handler logs
            e.state.metrics = {"train_loss": value + e.state.epoch}

        ResumableMLFlowHandler(tracking_uri=uri, experiment_name="exp", run_name="r", iteration_log=False,
                               epoch_log=True, close_on_complete=False).attach(engine)  # fmt: skip
        if done:
            engine.load_state_dict({"epoch": done, "epoch_length": 1, "max_epochs": last})
        engine.run([0], max_epochs=last)

    run_epochs(0, 3, 0.0)  # epochs 1..3 logged, but (say) only epoch 2 was checkpointed
    run_epochs(2, 4, 10.0)  # resumed from epoch 2: epoch 3 is trained and logged again
    client = mlflow.MlflowClient(tracking_uri=uri)
    [run] = client.search_runs([client.get_experiment_by_name("exp").experiment_id])
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
    assert sorted(steps) == [1, 2, 3, 4]
    history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "train_loss")}
    assert history == {1: 1.0, 2: 2.0, 3: 3.0, 4: 14.0}  # the first value logged for a step stays


def test_a_predict_rerun_killed_midway_leaves_the_previous_outputs_whole(
    tmp_path: Path, us_phantoms: Path, us_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outputs of two models got mixed under the old predictions.csv; scratch folders were left."""
    from sum_monai.predict import runner

    inputs = tmp_path / "in"
    for i in range(3):
        write_png(inputs / f"c{i}.png", texture(32, 32, seed=i))
    out = tmp_path / "out"
    assert predict_cli("breast_us_seg_2d", inputs, out, us_weights, "--set", "image_size=32") == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert len(before) == 7
    (tmp_path / ".sum_monai-predict-out-stale").mkdir()  # left by an earlier killed run
    (tmp_path / "other").mkdir()
    other = random_weights("breast_us_seg_2d", tmp_path / "other", {"image_size": 32})
    real = runner.Predictor.finish
    calls = []

    def killed_on_second_case(self: object, *args: object, **kwargs: object) -> dict:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(runner.Predictor, "finish", killed_on_second_case)
    assert predict_cli("breast_us_seg_2d", inputs, out, other, "--set", "image_size=32") == 130
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert not [p for p in tmp_path.rglob(".sum_monai-predict-*")]


def test_a_second_trainer_on_the_same_run_folder_is_refused(tmp_path: Path, us_phantoms: Path) -> None:
    from filelock import FileLock

    from sum_monai.workflows.train import train

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with FileLock(str(run_dir / ".lock")), pytest.raises(ConfigError, match="another process is training into it"):
        train("breast_us_seg_2d", data=us_phantoms, output=run_dir, epochs=1, overrides=SMALL_US,
              tracking_uri=f"sqlite:///{tmp_path / 'mlruns.db'}")  # fmt: skip
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]


def test_epochs_shorter_than_the_validation_interval_are_refused_before_training(tmp_path: Path, us_phantoms: Path) -> None:
    """It failed only after training, leaving run.json 'running' while MLflow said FINISHED."""
    from sum_monai.workflows.train import train

    with pytest.raises(ConfigError, match=r"--epochs 1 is shorter than val_interval 2: no validation would run"):
        train("breast_us_seg_2d", data=us_phantoms, output=tmp_path / "run", epochs=1,
              overrides={**SMALL_US, "val_interval": 2}, tracking_uri=f"sqlite:///{tmp_path / 'mlruns.db'}")  # fmt: skip
    assert not (tmp_path / "run").exists()


def test_resume_continues_the_same_mlflow_run_and_interrupted_starts_are_marked_failed(
    tmp_path: Path, us_phantoms: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    import sum_monai.workflows.train as train_module
    from sum_monai.workflows.train import train

    # the model registry is covered by test_training.py; here it would only cost time
    monkeypatch.setattr(train_module, "register_torchscript", lambda *a, **k: SimpleNamespace(version="1"))
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    # an interrupted start: the first iteration is interrupted (as Ctrl-C would)
    stop = {"train#trainer#iteration_update": "$lambda e, b: (_ for _ in ()).throw(KeyboardInterrupt())"}
    with pytest.raises(KeyboardInterrupt):
        train("breast_us_seg_2d", data=us_phantoms, output=tmp_path / "broken", epochs=1, tracking_uri=uri,
              overrides={**SMALL_US, **stop})  # fmt: skip
    assert json.loads((tmp_path / "broken" / "run.json").read_text())["status"] == "failed"
    [broken] = client.search_runs([client.get_experiment_by_name("breast_us_seg_2d").experiment_id])
    assert broken.info.status == "FAILED"
    # a finished run, resumed with more epochs, continues in the same MLflow run
    first = train("breast_us_seg_2d", data=us_phantoms, output=tmp_path / "run", epochs=1, tracking_uri=uri,
                  overrides=SMALL_US)  # fmt: skip
    assert client.get_run(first.mlflow_run_id).info.status == "FINISHED"
    second = train("breast_us_seg_2d", output=tmp_path / "run", resume=True, epochs=2)
    assert second.mlflow_run_id == first.mlflow_run_id
    runs = client.search_runs([client.get_experiment_by_name("breast_us_seg_2d").experiment_id],
                              filter_string=f"attributes.run_name = '{first.run_name}'")  # fmt: skip
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(first.mlflow_run_id, "train_loss")) == [1, 2]


# ======================================================================= privacy and trust


def test_case_ids_are_keyed_by_a_random_salt_kept_in_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The constant default salt let anyone map all case ids back to file names."""
    import hashlib
    import hmac

    from sum_monai.datalists import ids

    monkeypatch.delenv(ids.SALT_ENV, raising=False)
    monkeypatch.setenv(ids.SALT_FILE_ENV, str(tmp_path / "a" / "id_salt"))
    ids.reset_salt_cache()
    with caplog.at_level(logging.INFO, logger="sum_monai.datalists.ids"):
        first = ids.case_id("benign/benign (1).png")
    salt_file = tmp_path / "a" / "id_salt"
    assert salt_file.is_file() and stat.S_IMODE(salt_file.stat().st_mode) == 0o600
    assert len(salt_file.read_text().strip()) == 64
    assert str(salt_file) in caplog.text and "back it up" in caplog.text
    assert not hasattr(ids, "DEFAULT_SALT")
    old_default = hmac.new(b"sum_monai-case-id-v1", b"file:benign/benign (1).png", hashlib.sha256).hexdigest()[:12]
    assert first != f"case-{old_default}"
    ids.reset_salt_cache()
    assert ids.case_id("benign/benign (1).png") == first  # the file is reused
    monkeypatch.setenv(ids.SALT_FILE_ENV, str(tmp_path / "b" / "id_salt"))
    ids.reset_salt_cache()
    assert ids.case_id("benign/benign (1).png") != first  # another installation, other ids
    assert ids.salt_source() == "file"
    ids.reset_salt_cache()


def test_bundle_verify_says_that_it_runs_the_bundle_code(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from sum_monai.bundle import verify

    monkeypatch.setattr(verify, "verify_bundle", lambda b: verify.VerifyReport(b.name, checks=["metadata schema"]))
    assert main(["bundle", "verify", "--bundle", "breast_us_seg_2d"]) == 0
    out = capsys.readouterr().out
    assert "verify runs the bundle's code" in out and "docs/trust.md" in out
    trust = (Path(__file__).resolve().parents[1] / "docs" / "trust.md").read_text()
    assert "`predict` and `export` call it now" not in trust
    for command in ("sum-monai train --resume", "sum-monai evaluate", "sum-monai bundle verify"):
        assert command in trust
