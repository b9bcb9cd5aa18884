"""Dataset fingerprints and the overrides derived from them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sum_monai.datalists.build import build_datalist
from sum_monai.plans import fingerprint, plan_overrides


@pytest.fixture(scope="module")
def datalists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from sum_monai.phantoms import generate

    root = tmp_path_factory.mktemp("plans")
    generate("us", 12, root / "us", seed=0, size=(96, 160), progress=False)
    generate("mri", 3, root / "mri", seed=0, format="nifti", spacing=(0.7, 0.7, 2.5), progress=False)
    out = {}
    for layout, name in (("busi", "us"), ("msd", "mri")):
        out[name] = root / name / "datalist.json"
        build_datalist(layout, root / name, out[name], val_frac=0.0, test_frac=0.0, progress=False)
    return out


def test_2d_fingerprint_and_plan(datalists: dict[str, Path]) -> None:
    fp = fingerprint(datalists["us"])
    assert fp.spatial_dims == 2 and fp.n_cases == 12 and fp.channels == 1
    assert fp.median_shape == [160.0, 96.0]  # (W, H): 160 columns, 96 rows
    assert 0.0 < fp.foreground_fraction < 0.2
    assert fp.intensity_percentiles[0] <= fp.intensity_percentiles[1] <= fp.intensity_percentiles[2] <= 255
    assert plan_overrides(fp) == {"image_size": 160}
    assert plan_overrides(fp, max_size=128) == {"image_size": 128}


def test_3d_plan_follows_the_spacing_and_size(datalists: dict[str, Path], tmp_path: Path) -> None:
    fp = fingerprint(datalists["mri"])
    assert fp.spatial_dims == 3 and fp.channels == 2
    assert fp.median_spacing == pytest.approx([0.7, 0.7, 2.5], abs=1e-3)
    plan = plan_overrides(fp, max_roi=(96, 96, 32))
    assert plan["pixdim"] == pytest.approx([0.7, 0.7, 2.5], abs=1e-3)
    assert all(r % 8 == 0 and r <= cap for r, cap in zip(plan["roi_size"], (96, 96, 32), strict=True))
    out = tmp_path / "plan.json"
    done = subprocess.run(
        [sys.executable, "-m", "sum_monai", "plan", str(datalists["mri"]), "--out", str(out), "--max-roi", "96", "96", "32"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    written = json.loads(out.read_text())
    assert written["pixdim"] == plan["pixdim"] and written["roi_size"] == plan["roi_size"]
    assert written["_fingerprint"]["n_cases"] == 3
