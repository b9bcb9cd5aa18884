"""Precision as a setting: what each request becomes on each device, and predict recording it.

The CPU's own flags decide on the real machine; the other CPU kind is simulated by patching
``cpu_bf16_native`` of the bundles' ``scripts/precision.py`` (the resolution rules, not the speed).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from sum_monai.bundle.bundle_scripts import precision as bundle_prec
from sum_monai.bundle.locate import Bundle
from sum_monai.utils import precision as prec
from sum_monai.utils.precision import resolve_precision


@pytest.mark.parametrize(
    ("requested", "native", "expected"),
    [
        ("auto", False, "fp32"), ("bf16", False, "fp32"), ("fp16", False, "fp32"), ("fp32", True, "fp32"),
        ("bf16", True, "bf16"), ("auto", True, "fp32"),
    ],
)  # fmt: skip
def test_cpu_never_runs_an_emulated_precision(
    requested: str, native: bool, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bundle_prec, "cpu_bf16_native", lambda: native)
    p = resolve_precision(requested, "cpu")
    assert p.name == expected and p.device_type == "cpu" and p.requested == requested
    assert (p.dtype is torch.bfloat16) == (expected == "bf16")
    if requested == "bf16" and not native:
        assert "no AVX512-BF16 or AMX" in p.reason
    # channels-last batches with bf16 on the CPU, the autocast context gives bf16 matmuls only where chosen
    x = p.layout(torch.rand(2, 3, 8, 8))  # 3 channels: a 1-channel batch is trivially both layouts
    assert x.is_contiguous(memory_format=torch.channels_last) == (expected == "bf16")
    assert x.is_contiguous() or expected == "bf16"
    with p.autocast():
        y = torch.nn.functional.linear(torch.rand(2, 4), torch.rand(3, 4))
    assert y.dtype == (torch.bfloat16 if expected == "bf16" else torch.float32)


def test_gpu_rules_and_unknown_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", "cuda").name == "bf16"
    assert resolve_precision("fp16", "cuda:0").name == "fp16"
    assert not resolve_precision("auto", "cuda").channels_last
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("bf16", "cuda").name == "fp16"
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        resolve_precision("fp8", "cpu")


def test_this_cpu_flags_decide(tmp_path: Path) -> None:
    """``--precision bf16`` on this machine: bf16 where the CPU has it, else fp32, recorded per case;
    the masks agree with fp32 either way."""
    import numpy as np
    from PIL import Image
    from test_predict import OVERRIDES, calibrated_weights, make_phantoms, set_flags

    from sum_monai.cli import main

    data = make_phantoms("us", tmp_path / "us")
    images = sorted(p for p in data.rglob("*.png") if "_mask" not in p.name)
    weights = calibrated_weights("breast_us_seg_2d", [str(p) for p in images], tmp_path)
    masks = {}
    for name in ("fp32", "bf16"):
        out = tmp_path / name
        assert main(["predict", "--bundle", "breast_us_seg_2d", "--weights", str(weights), "--input", str(data),
                     "--output", str(out), "--device", "cpu", "--no-progress", "--precision", name,
                     *set_flags(OVERRIDES["breast_us_seg_2d"])]) == 0  # fmt: skip
        records = [json.loads(p.read_text()) for p in out.rglob("*.json")]
        assert {r["precision"] for r in records} == {"bf16" if name == "bf16" and prec.cpu_bf16_native() else "fp32"}
        masks[name] = [np.asarray(Image.open(out / p.relative_to(data).with_name(f"{p.stem}_seg.png"))) for p in images]
    agreement = np.mean([np.mean(a == b) for a, b in zip(masks["fp32"], masks["bf16"], strict=True)])
    assert agreement >= (0.99 if prec.cpu_bf16_native() else 1.0)


@pytest.mark.parametrize("bundle", ["breast_us_seg_2d", "mammo_seg_2d", "breast_mri_seg_3d"])
def test_each_bundle_runs_its_precision_setting_through_monais_engines(bundle: str) -> None:
    """``precision`` replaced ``amp``: trainer and evaluators call ``engine_network`` and take
    ``amp`` / ``amp_kwargs`` from ``scripts/precision.py``; on this CPU bf16 is what it resolves to."""
    from sum_monai.bundle.run import create_workflow

    for name, engines in (("train", ("train#trainer", "validate#evaluator")), ("inference", ("evaluator",))):
        wf = create_workflow(Bundle.find(bundle), name, {"precision": "bf16", "device": "$torch.device('cpu')"})
        assert "amp" not in wf.parser, "the CUDA-only amp flag is gone; precision replaces it"
        assert wf.parser.get("precision") == "bf16"
        engine_network = wf.parser.get_parsed_content("engine_network")
        # the bundle's own scripts.precision module (not this package's copy): a marker, not isinstance
        assert getattr(engine_network, "cpu_autocast", False) == bundle_prec.cpu_bf16_native()
        for engine in engines:
            assert wf.parser.get(f"{engine}#network") == "@engine_network"
            assert wf.parser.get_parsed_content(f"{engine}#amp") is False  # CPU: MONAI's CUDA autocast stays off
            assert wf.parser.get_parsed_content(f"{engine}#amp_kwargs") == {}


def test_cuda_precision_is_monais_own_amp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert bundle_prec.cuda_amp("auto", "cuda") and bundle_prec.amp_kwargs("auto", "cuda:0") == {"dtype": torch.bfloat16}
    assert bundle_prec.amp_kwargs("fp16", torch.device("cuda")) == {"dtype": torch.float16}
    assert not bundle_prec.cuda_amp("fp32", "cuda") and bundle_prec.amp_kwargs("fp32", "cuda") == {}
    net = torch.nn.Conv2d(1, 2, 3)
    assert bundle_prec.network_for(net, "bf16", "cuda") is net  # MONAI autocasts on CUDA itself
    assert not bundle_prec.cuda_amp("bf16", "cpu")  # MONAI Label hands the device over as a string


def test_cpu_bf16_training_step_runs_bf16_inside_and_fp32_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``precision=bf16`` trains with on a CPU with native bf16 (simulated here, so emulated):
    convolutions in bf16 on channels-last inputs, fp32 logits for the loss, fp32 parameters that
    are the network's own (checkpoints of ``@network`` unchanged), and ensemble members alike."""
    from monai.engines import SupervisedTrainer
    from monai.losses import DiceFocalLoss
    from monai.networks.nets import UNet

    monkeypatch.setattr(bundle_prec, "cpu_bf16_native", lambda: True)
    torch.manual_seed(0)
    net = UNet(2, 1, 2, channels=(4, 8), strides=(2,))
    wrapped = bundle_prec.network_for(net, "bf16", "cpu")
    assert isinstance(wrapped, bundle_prec.CpuAutocast)
    assert [k.removeprefix("network.") for k in wrapped.state_dict()] == list(net.state_dict())
    inner: list[tuple[torch.dtype, bool]] = []
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda m, i, o: inner.append((o.dtype, i[0].is_contiguous(memory_format=torch.channels_last))))
    before = conv.weight.detach().clone()
    x = torch.rand(2, 1, 16, 16)
    y = (torch.rand(2, 1, 16, 16) > 0.7).float()
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=[{"image": x, "label": y}], network=wrapped,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1), loss_function=DiceFocalLoss(to_onehot_y=True, softmax=True),
        amp=bundle_prec.cuda_amp("bf16", "cpu"),
    )  # fmt: skip
    trainer.run()
    assert inner and inner[0][0] == torch.bfloat16
    assert trainer.state.output[0]["pred"].dtype == torch.float32
    assert net.state_dict()[next(iter(net.state_dict()))].dtype == torch.float32
    assert not torch.equal(conv.weight.detach(), before)
    assert math.isfinite(float(trainer.state.output[0]["loss"]))

    from sum_monai.bundle.bundle_scripts.ensemble import EnsembleInferer

    member_dtypes: list[torch.dtype] = []
    ens = EnsembleInferer(network_def=net, checkpoint="")
    other = UNet(2, 1, 2, channels=(4, 8), strides=(2,))
    other_conv = next(m for m in other.modules() if isinstance(m, torch.nn.Conv2d))
    other_conv.register_forward_hook(lambda m, i, o: member_dtypes.append(o.dtype))
    monkeypatch.setattr(ens, "_load_members", lambda device: [other])
    with torch.no_grad():
        ens(x, wrapped)
    assert member_dtypes == [torch.bfloat16], "every ensemble member runs in the configured precision"


def test_int8_is_calibrated_then_checked_against_fp32_and_refused_below_the_threshold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--backend openvino --precision int8``: NNCF calibrates on the datalist's training images,
    the masks are compared with fp32 on its validation images, and below the threshold nothing is
    predicted (on real BUSI the shipped ensemble is refused at Dice 0.992; docs/predict.md)."""
    from test_predict import OVERRIDES, calibrated_weights, make_phantoms, set_flags

    import sum_monai.predict.int8 as int8
    from sum_monai.cli import main

    data = make_phantoms("us", tmp_path / "us")
    images = sorted(p for p in data.rglob("*.png") if "_mask" not in p.name)
    weights = calibrated_weights("breast_us_seg_2d", [str(p) for p in images], tmp_path)
    datalist = tmp_path / "calibration.json"
    datalist.write_text(json.dumps({"training": [{"image": str(p)} for p in images[:2]], "validation": [{"image": str(images[2])}]}))
    base = ["predict", "--bundle", "breast_us_seg_2d", "--weights", str(weights), "--input", str(data), "--device", "cpu",
            "--no-progress", *set_flags(OVERRIDES["breast_us_seg_2d"])]  # fmt: skip
    int8_args = ["--backend", "openvino", "--precision", "int8", "--calibration", str(datalist)]

    monkeypatch.setattr(int8, "MIN_AGREEMENT", -1.0)  # any figure passes: the check still runs and is recorded
    assert main([*base, "--output", str(tmp_path / "ok"), *int8_args]) == 0
    records = [json.loads(p.read_text()) for p in (tmp_path / "ok").rglob("*.json")]
    assert len(records) == len(images) and {r["precision"] for r in records} == {"int8"}
    check = records[0]["int8_check"]
    assert (check["calibration_images"], check["validation_images"]) == (2, 1) and 0.0 <= check["dice_vs_fp32"] <= 1.0

    monkeypatch.setattr(int8, "MIN_AGREEMENT", 1.01)  # no model reaches it: refused before any case
    capsys.readouterr()
    assert main([*base, "--output", str(tmp_path / "refused"), *int8_args]) == 2
    err = capsys.readouterr().err
    assert "--precision int8 refused" in err and "on 1 validation images, below 1.01" in err
    assert not (tmp_path / "refused").exists()

    for extra, reason in (
        (["--precision", "int8", "--calibration", str(datalist)], "is for --backend openvino"),
        (["--backend", "openvino", "--precision", "int8"], "needs --calibration DATALIST"),
    ):
        assert main([*base, "--output", str(tmp_path / "x"), *extra]) == 2
        assert reason in capsys.readouterr().err
