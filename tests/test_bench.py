"""Correctness of the benchmark harness (bench/): FLOP counts, backend agreement, Dice, windows, docs.

No timings are asserted here: speed figures come only from ``python -m bench``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench import backends as bk
from bench.flops import count_flops
from bench.infer2d import mean_dice, predict
from bench.infer3d import InfererConfig
from bench.machine import Machine
from bench.report import replace_section, table


def test_flops_of_a_convolution_and_a_linear_layer() -> None:
    conv = torch.nn.Conv2d(3, 8, kernel_size=3, padding=1, bias=False)
    # 2 (multiply + add) x output pixels x out channels x in channels x kernel
    assert count_flops(conv, torch.zeros(2, 3, 16, 16)) == 2 * 2 * 16 * 16 * 8 * 3 * 3 * 3
    assert count_flops(torch.nn.Linear(5, 7, bias=False), torch.zeros(4, 5)) == 2 * 4 * 5 * 7


def test_flops_count_a_monai_unet_per_level_and_leave_training_mode_alone() -> None:
    from monai.networks.nets import UNet

    net = UNet(2, 1, 2, channels=(4, 8), strides=(2,), num_res_units=0).train()
    small = count_flops(net, torch.zeros(1, 1, 32, 32))
    assert net.training
    # convolutions scale with the pixel count: 4x the pixels, 4x the FLOPs
    assert count_flops(net, torch.zeros(1, 1, 64, 64)) == 4 * small
    assert count_flops(net, torch.zeros(3, 1, 32, 32)) == 3 * small


@pytest.fixture(scope="module")
def tiny_unet_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, object, object]:
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    net = UNet(2, 1, 2, channels=(4, 8, 16), strides=(2, 2), num_res_units=1, norm="batch").eval()
    folder = tmp_path_factory.mktemp("tiny")
    ts = folder / "model.ts"
    torch.jit.script(net).save(str(ts))
    onnx = folder / "model.onnx"
    torch.onnx.export(
        net,
        (torch.zeros(4, 1, 32, 32),),
        str(onnx),
        input_names=["image"],
        output_names=["pred"],
        dynamo=False,
    )
    return net, ts, onnx


def test_backends_agree_with_eager_on_a_tiny_unet(tiny_unet_files: tuple) -> None:
    net, ts, onnx = tiny_unet_files
    x = np.random.default_rng(0).random((4, 1, 32, 32), dtype=np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    candidates = [
        bk.eager(net),
        bk.torchscript(ts),
        bk.torchscript(ts, optimize=True),
        *[bk.onnxruntime(onnx, threads=1, level=lv) for lv in bk.ORT_LEVELS],
    ]
    if pytest.importorskip("openvino", reason="OpenVINO is an optional bench extra"):
        candidates.append(bk.openvino(onnx, threads=1, shape=[4, 1, 32, 32], precision="f32"))
    for backend in candidates:
        got = backend.run(x)
        assert got.shape == (4, 2, 32, 32), backend.name
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4, err_msg=backend.name)
        # the same masks: Dice vs eager is exactly 1
        assert mean_dice(predict(backend.run, x), expected.argmax(1), 2) == 1.0


def test_openvino_static_batch_runs_a_smaller_batch_and_the_torch_wrapper(tiny_unet_files: tuple) -> None:
    pytest.importorskip("openvino", reason="OpenVINO is an optional bench extra")
    net, _, onnx = tiny_unet_files
    backend = bk.openvino(onnx, threads=1, shape=[4, 1, 32, 32])
    x = np.random.default_rng(1).random((3, 1, 32, 32), dtype=np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    got = backend.torch_callable()(torch.from_numpy(x))
    assert isinstance(got, torch.Tensor) and tuple(got.shape) == (3, 2, 32, 32)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-4, rtol=1e-4)


def test_int8_quantisation_keeps_the_tiny_unet_close(tiny_unet_files: tuple) -> None:
    pytest.importorskip("nncf", reason="NNCF is an optional bench extra")
    net, _, onnx = tiny_unet_files
    rng = np.random.default_rng(2)
    calib = [rng.random((4, 1, 32, 32), dtype=np.float32) for _ in range(2)]
    backend = bk.openvino_int8(onnx, threads=1, shape=[4, 1, 32, 32], calibration=calib)
    x = rng.random((4, 1, 32, 32), dtype=np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    got = backend.run(x)
    assert backend.note == "calibrated on 8 inputs"
    # INT8 is not exact, but it must stay within a few percent of the logits' range
    assert np.abs(got - expected).max() < 0.1 * np.ptp(expected)


def test_pad_batch() -> None:
    x = np.ones((2, 1, 3, 3), dtype=np.float32)
    padded = bk.pad_batch(x, 5)
    assert padded.shape == (5, 1, 3, 3) and padded[:2].sum() == 18 and padded[2:].sum() == 0
    assert bk.pad_batch(x, 2) is x


def test_mean_dice_values() -> None:
    ref = np.zeros((2, 4, 4), dtype=np.int64)
    pred = np.zeros((2, 4, 4), dtype=np.int64)
    ref[0, :2, :2] = 1  # 4 pixels
    pred[0, :2, :1] = 1  # 2 of them
    # image 0: 2*2 / (2 + 4) = 2/3; image 1: both empty -> 1 (MONAI ignore_empty=False)
    assert mean_dice(pred, ref, 2) == pytest.approx((2 / 3 + 1) / 2)
    three = np.array([[[1, 2], [0, 0]]])
    # classes 1 and 2 each fully matched
    assert mean_dice(three, three, 3) == 1.0
    swapped = np.array([[[2, 1], [0, 0]]])
    assert mean_dice(swapped, three, 3) == 0.0


def test_sliding_window_counts_of_the_mri_bundle_settings() -> None:
    base = InfererConfig((96, 96, 32), 4, 0.25, "gaussian")
    # steps of 72 over 256 -> 4 positions per in-plane axis; steps of 24 over 128 -> 5
    assert base.windows((256, 256, 128)) == 4 * 4 * 5
    assert InfererConfig((96, 96, 32), 4, 0.0, "gaussian").windows((256, 256, 128)) == 3 * 3 * 4
    assert InfererConfig((128, 128, 64), 2, 0.0, "gaussian").windows((256, 256, 128)) == 2 * 2 * 2
    assert base.label() == "roi 96x96x32, sw_batch 4, overlap 0.25"


def test_replace_section_keeps_the_rest_of_the_document() -> None:
    doc = "# Benchmarks\n\nintro\n"
    once = replace_section(doc, "train", "## Training\nold")
    assert (
        once.startswith(doc.rstrip())
        and "<!-- bench:train:start -->\n## Training\nold\n<!-- bench:train:end -->" in once
    )
    twice = replace_section(once + "\nafter\n", "train", "## Training\nnew")
    assert (
        "old" not in twice
        and "new" in twice
        and twice.rstrip().endswith("after")
        and twice.count("bench:train:start") == 1
    )
    other = replace_section(twice, "infer2d", "## 2D")
    assert other.index("bench:train:start") < other.index("bench:infer2d:start")


def test_table_and_machine_header() -> None:
    assert table(["a", "b"], [[1, "x"]]) == "| a | b |\n|---|---|\n| 1 | x |"
    m = Machine(
        "Some CPU", 2, 2, ["avx512f"], {"python": "3.11", "torch": "2.13"}, (0.5, 0.4, 0.3), {"fp32": 123.4}
    )
    header = m.header()
    assert "Some CPU, 2 cores" in header and "threads used: 2" in header
    assert "torch 2.13" in header and "fp32 123 GFLOP/s" in header and "0.50 / 0.40 / 0.30" in header


def test_naive_dataset_reads_pngs_like_the_bundle_loader(tmp_path) -> None:
    from monai.transforms import LoadImaged

    from bench.models import datalist_items
    from bench.train import PngDataset
    from sum_monai.phantoms import generate

    generate("us", 3, tmp_path / "us", seed=0, size=(48, 64), overview=False, progress=False)
    items = datalist_items(tmp_path / "us", tmp_path / "dl")
    load = LoadImaged(["image", "label"], reader="PILReader", converter=lambda im: im.convert("L"),
                      image_only=True, ensure_channel_first=True)  # fmt: skip
    naive = PngDataset(items, transform=lambda d: d)
    for i, item in enumerate(items):
        ours, bundle = naive[i], load(dict(item))
        assert tuple(ours["image"].shape) == (1, 64, 48)  # (C, W, H) as MONAI's PILReader
        np.testing.assert_array_equal(ours["image"].numpy(), np.asarray(bundle["image"]))
        np.testing.assert_array_equal(ours["label"].numpy(), np.asarray(bundle["label"]))


def test_onnxruntime_int8_quantisation_keeps_the_tiny_unet_close(tiny_unet_files: tuple, tmp_path) -> None:
    net, _, onnx = tiny_unet_files
    rng = np.random.default_rng(3)
    calib = [rng.random((4, 1, 32, 32), dtype=np.float32) for _ in range(2)]
    backend = bk.onnxruntime_int8(onnx, threads=1, calibration=calib, work=tmp_path)
    x = rng.random((4, 1, 32, 32), dtype=np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    got = backend.run(x)
    assert (tmp_path / "model_int8.onnx").is_file() and backend.note == "calibrated on 8 inputs"
    assert np.abs(got - expected).max() < 0.1 * np.ptp(expected)


def test_predict_table_ratios_are_to_the_bundles_inferer() -> None:
    """The end-to-end rows quote the share of the inferer's own rate; bf16 says whether it was emulated."""
    from bench.predict import Result, render

    machine = Machine("Test CPU", 2, 2, ["avx2"], {"python": "3.11", "torch": "2.13.0"}, (0.1, 0.1, 0.1))
    result = Result(source="4 images", n=4, help_s=0.2, one_image_s=9.0, cli_s=8.0, network_rate=6.0, single_rate=60.0,
                    passes=10, e2e={"batch 8": 3.0}, bf16={"mean_dice": 0.9973, "min_dice": 0.9, "n": 4, "speed_ratio": 0.05})  # fmt: skip
    text = render(machine, result, "python -m bench predict")
    assert "| `predict` end to end, batch 8 | 3.00 img/s | 50 % of the inferer alone" in text
    assert "0.50 img/s | 8.0 s wall" in text  # 4 images in 8 s, fresh process
    assert "(10 passes per image)" in text and "flags avx2" in text
    assert "(emulated: no AVX512-BF16/AMX)" in text and "lesion Dice 0.9973" in text
    native = Machine("Xeon", 2, 2, ["avx512_bf16", "amx_bf16"], {"python": "3.11"}, (0.1, 0.1, 0.1))
    assert "(native)" in render(native, result, "python -m bench predict")


def test_predict_table_3d_rows_name_the_precision_and_the_fresh_process() -> None:
    """The 3D rows: fp32 in this process, bf16 with its mask agreement where measured, the fresh process."""
    from bench.predict import Result, render

    machine = Machine("Test CPU", 2, 2, ["avx512_bf16"], {"python": "3.11"}, (0.1, 0.1, 0.1))
    mri = {"generate_s": 80.0, "predict_s_fp32": 21.0, "predict_s_bf16": 15.5, "bf16_dice": 0.9981, "shape": [448, 448, 160],
           "cli_s": 30.2}  # fmt: skip
    text = render(machine, Result(source="1 image", n=1, mri=mri), "python -m bench predict")
    assert "through `predict`, fp32, in this process after one warm-up | 21.0 s" in text
    assert "through `predict --precision bf16`, in this process | 15.5 s | mask Dice vs fp32 0.9981" in text
    assert "`sum-monai predict` in a fresh process (the bundle's precision: auto, fp32 on CPUs) | 30.2 s" in text
    del mri["predict_s_bf16"], mri["bf16_dice"]
    assert "--precision bf16" not in render(machine, Result(source="1 image", n=1, mri=mri), "python -m bench predict")


def test_mask_dice_of_the_bf16_rows() -> None:
    """Two empty masks agree (1.0); otherwise 2|A and B| / (|A| + |B|)."""
    from bench.predict import _mask_dice

    a = np.zeros((4, 4, 2), bool)
    assert _mask_dice(a, a) == 1.0
    b = a.copy()
    a[0, :2] = True  # 4 voxels
    b[0, 1:3] = True  # 4 voxels, 2 shared
    assert abs(_mask_dice(a, b) - 0.5) < 1e-6 and _mask_dice(a, np.zeros_like(a)) == 0.0
