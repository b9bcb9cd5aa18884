"""TorchScript and ONNX exports of each bundle: `sum-monai export`, and predictions that agree with eager.

For every bundle, weights that give non-trivial masks on its phantoms (see
``test_predict.calibrated_weights``) are exported with ``sum-monai export`` in both formats; the
exports must reproduce the eager logits on an input of another size (dynamic axes), and
``sum-monai predict`` with ``--backend onnx`` (ONNX Runtime, CPU) and ``--backend torchscript``
must give the same masks as ``--backend torch``: Dice >= 0.999 per case.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_predict import OVERRIDES, calibrated_weights, dice, make_phantoms, set_flags

from sum_monai.bundle.locate import Bundle
from sum_monai.bundle.run import create_workflow
from sum_monai.cli import main

BUNDLES = {"breast_us_seg_2d": "us", "mammo_seg_2d": "mammo", "breast_mri_seg_3d": "mri"}
#: input sizes other than those the exports were traced / checked with
OTHER_SHAPE = {
    "breast_us_seg_2d": (2, 1, 96, 80),
    "mammo_seg_2d": (1, 1, 80, 112),
    "breast_mri_seg_3d": (2, 2, 48, 40, 24),
}
DICE_BOUND = 0.999


def _inputs(modality: str, data: Path) -> tuple[Path, list]:
    """The folder to predict and the inputs used to calibrate the weights."""
    if modality == "us":
        images = sorted(p for p in data.rglob("*.png") if "_mask" not in p.name)
        return data, [str(p) for p in images]
    if modality == "mammo":
        return data / "images", [str(p) for p in sorted((data / "images").glob("*.dcm"))]
    pairs = [[str(data / "imagesTr" / f"breast_000{i}_000{c}.nii.gz") for c in (0, 1)] for i in (1, 2)]
    return data / "imagesTr", pairs


@pytest.fixture(scope="module", params=list(BUNDLES))
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    name = request.param
    root = tmp_path_factory.mktemp(name)
    data = make_phantoms(BUNDLES[name], root / "data")
    folder, calibration = _inputs(BUNDLES[name], data)
    weights = calibrated_weights(name, calibration, root)
    files = {}
    for fmt, suffix in (("torchscript", "ts"), ("onnx", "onnx")):
        files[fmt] = root / f"model.{suffix}"
        status = main(
            ["export", "--bundle", name, "--weights", str(weights), "--format", fmt, "--out", str(files[fmt])]
        )
        assert status == 0 and files[fmt].is_file()
    return {"name": name, "root": root, "folder": folder, "weights": weights, **files}


def test_exports_reproduce_eager_logits_at_other_sizes(exported: dict) -> None:
    import onnxruntime as ort

    name = exported["name"]
    net = create_workflow(Bundle.find(name), "inference").parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(exported["weights"], weights_only=True))
    net.eval()
    x = torch.rand(*OTHER_SHAPE[name], generator=torch.Generator().manual_seed(1))
    scripted = torch.jit.load(str(exported["torchscript"])).eval()
    session = ort.InferenceSession(str(exported["onnx"]), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        eager = net(x).numpy()
        ts = scripted(x).numpy()
    onnx_out = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert eager.shape == ts.shape == onnx_out.shape == (x.shape[0], eager.shape[1], *x.shape[2:])
    assert np.abs(ts - eager).max() < 1e-4
    assert np.abs(onnx_out - eager).max() < 1e-3


def test_onnx_and_torchscript_predictions_match_eager(exported: dict) -> None:
    """Dice >= 0.999 between backends on every phantom (ONNX Runtime and OpenVINO from the exported
    file, TorchScript exported on the fly)."""
    import nibabel as nib
    from PIL import Image

    name, root = exported["name"], exported["root"]
    runs = {"torch": [], "onnx": ["--model", str(exported["onnx"])], "torchscript": [],
            "openvino": ["--model", str(exported["onnx"])]}  # fmt: skip
    for backend, extra in runs.items():
        status = main([
            "predict", "--bundle", name, "--weights", str(exported["weights"]), "--input", str(exported["folder"]),
            "--output", str(root / backend), "--backend", backend, "--device", "cpu", "--no-progress",
            *extra, *set_flags(OVERRIDES[name]),
        ])  # fmt: skip
        assert status == 0, backend

    def load(path: Path) -> np.ndarray:
        return (
            np.asarray(nib.load(path).dataobj)
            if path.name.endswith(".nii.gz")
            else np.asarray(Image.open(path))
        )

    masks = sorted(
        p for p in (root / "torch").rglob("*_seg.*") if p.suffix != ".dcm"
    )  # PNG / NIfTI, not SEGs
    assert len(masks) >= 2
    for mask_path in masks:
        rel = mask_path.relative_to(root / "torch")
        reference = load(mask_path)
        assert 0.01 < (reference > 0).mean() < 0.6, f"{rel}: masks should be non-trivial"
        for backend in ("onnx", "torchscript", "openvino"):
            other = load(root / backend / rel)
            assert dice(reference, other) >= DICE_BOUND, (
                f"{rel}: {backend} vs torch Dice {dice(reference, other):.5f}"
            )
            assert np.mean(reference == other) >= DICE_BOUND  # the class labels agree too (mammography)


def test_exports_follow_the_configured_network(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Weights of a run trained with other network_def settings export with the same --set, and only so."""
    narrow = {"network_def#channels": [8, 16, 32, 64, 128]}
    bundle = Bundle.find("breast_us_seg_2d")
    torch.manual_seed(0)
    net = create_workflow(bundle, "inference", narrow).parser.get_parsed_content("network_def").eval()
    weights = tmp_path / "narrow.pt"
    torch.save(net.state_dict(), weights)
    base = ["export", "--bundle", "breast_us_seg_2d", "--weights", str(weights), "--format", "torchscript"]
    assert main([*base, "--out", str(tmp_path / "plain.ts")]) == 2
    assert "layer(s) with other shapes" in capsys.readouterr().err and not (tmp_path / "plain.ts").exists()
    assert main([*base, "--out", str(tmp_path / "narrow.ts"), *set_flags(narrow)]) == 0
    x = torch.rand(1, 1, 64, 48, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.allclose(torch.jit.load(str(tmp_path / "narrow.ts"))(x), net(x), atol=1e-5)


def test_exports_follow_variables_that_shape_the_network(tmp_path: Path) -> None:
    """``num_classes`` is a bundle variable, not a ``network_def#`` key: the 4-class tissue recipe
    (configs/ddsm_tissue.json) must still export (it failed at the end of a real 50-epoch run)."""
    from sum_monai.bundle.export import export_onnx, export_torchscript

    tissue = {"num_classes": 4, "network_def#channels": [8, 16, 32, 64, 128]}
    bundle = Bundle.find("mammo_seg_2d")
    torch.manual_seed(0)
    net = create_workflow(bundle, "inference", tissue).parser.get_parsed_content("network_def").eval()
    weights = tmp_path / "tissue.pt"
    torch.save(net.state_dict(), weights)
    ts = export_torchscript(bundle, weights, tmp_path / "tissue.ts", tissue)
    onnx_file = export_onnx(bundle, weights, tmp_path / "tissue.onnx", [1, 1, 64, 32], tissue)
    x = torch.rand(1, 1, 64, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = net(x)
        assert expected.shape[1] == 4
        assert torch.allclose(torch.jit.load(str(ts))(x), expected, atol=1e-5)
    import onnxruntime as ort

    got = ort.InferenceSession(str(onnx_file)).run(None, {"image": x.numpy()})[0]
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-4)


def test_every_fold_member_of_a_shipped_ensemble_runs_in_the_backend(tmp_path: Path) -> None:
    """``--backend torchscript|onnx|openvino`` replaced only the configured network; the 4 other fold
    models ran in eager PyTorch. Now each is exported from its own file (TorchScript here, the fastest
    export; ONNX Runtime and OpenVINO go through the same ``convert_members``), output unchanged."""
    from sum_monai.predict.runner import Predictor

    bundle = Bundle.find("breast_us_seg_2d")
    x = torch.rand(2, 1, 96, 96, generator=torch.Generator().manual_seed(0))
    outputs = {}
    for backend in ("torch", "torchscript"):
        with Predictor(bundle, tmp_path / backend, backend=backend, device="cpu") as predictor, torch.no_grad():
            members = predictor.inferer._load_members(torch.device("cpu"))
            scripted = [isinstance(m, torch.jit.ScriptModule) for m in members]
            assert len(members) == 4 and scripted == [backend == "torchscript"] * 4, backend
            outputs[backend] = torch.softmax(predictor.inferer(x, predictor.network), 1)
    torch.testing.assert_close(outputs["torchscript"], outputs["torch"], atol=1e-5, rtol=1e-4)


def test_exports_are_cached_by_weights_and_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second run with the same weights reuses the export; other weights make a new one."""
    from sum_monai.bundle import export as export_module
    from sum_monai.predict.backends import cached_export

    monkeypatch.setenv("SUM_MONAI_CACHE", str(tmp_path / "cache"))
    bundle = Bundle.find("breast_us_seg_2d")
    made: list[Path] = []

    def make(weights: Path):
        def write(out: Path | None) -> Path:
            made.append(out)
            return export_module.export_torchscript(bundle, weights, out or tmp_path / "scratch.ts")

        return write

    net = create_workflow(bundle, "inference", {}).parser.get_parsed_content("network_def")
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save(net.state_dict(), a)
    torch.nn.init.zeros_(next(net.parameters()))
    torch.save(net.state_dict(), b)
    first = cached_export("ts", bundle, a, {}, make(a))
    again = cached_export("ts", bundle, a, {}, make(a))
    other = cached_export("ts", bundle, b, {}, make(b))
    assert first == again != other and len(made) == 2 and first.is_file() and other.is_file()
    assert str(first).startswith(str(tmp_path / "cache" / "exports"))
    # a network override is part of the key
    assert cached_export("ts", bundle, a, {"dropout": 0.0}, make(a)) != first and len(made) == 3
