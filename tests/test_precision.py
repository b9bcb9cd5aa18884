"""Precision as a setting: what each request becomes on each device, and predict recording it.

The CPU's own flags decide on the real machine; the other CPU kind is simulated by patching
:func:`sum_monai.utils.precision.cpu_bf16_native` (the resolution rules, not the speed).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

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
    monkeypatch.setattr(prec, "cpu_bf16_native", lambda: native)
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
