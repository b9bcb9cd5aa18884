"""Ultrasound from other machines (issue 10): the phantom's scanner variants, and the shipped bundle on them.

Other scanners differ in gain, speckle grain (probe frequency, zoom), depth (image shape and
attenuation), bit depth, colour overlays and the text and calipers they burn into the image. The
phantom generator makes each variant (``gain``, ``speckle_grain``, ``attenuation``/``size``,
``overlay``); the shipped ensemble must predict every one on the input's own grid, and its
per-image percentile normalisation must make a linear gain change (or a 16-bit copy) no
difference to the mask.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sum_monai.cli import main
from sum_monai.phantoms import generate

BUSI = Path(__file__).resolve().parents[2] / "shared" / "data" / "busi"

VARIANTS: dict[str, dict] = {
    "default": {},
    "dark": {"gain": 0.4},
    "bright": {"gain": 2.5},
    "coarse_speckle": {"speckle_grain": 2.5},
    "fine_speckle": {"speckle_grain": 0.6},
    "deep": {"size": (400, 260), "attenuation": 0.7},
    "small": {"size": (100, 128)},
    "large": {"size": (800, 1000)},
    "overlay": {"overlay": True},
}


def _image(folder: Path) -> np.ndarray:
    return np.asarray(Image.open(next(p for p in sorted(folder.rglob("*.png")) if "_mask" not in p.name)))


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("variants")
    out = {}
    for name, settings in VARIANTS.items():
        settings = {"size": (192, 256), "class_mix": (1, 0, 0), **settings}
        out[name] = root / name
        generate("us", 1, out[name], seed=3, progress=False, overview=False, **settings)
    return out


def test_variants_change_what_they_say(variants: dict[str, Path]) -> None:
    means = {k: _image(variants[k]).mean() for k in ("dark", "default", "bright")}
    assert means["dark"] < means["default"] < means["bright"], means

    def grain(img: np.ndarray) -> float:  # lateral autocorrelation at a 3-pixel lag
        x = img.astype(np.float64)[40:150, 20:230]
        x -= x.mean()
        return float((x[:, 3:] * x[:, :-3]).mean() / (x * x).mean())

    assert grain(_image(variants["fine_speckle"])) < grain(_image(variants["default"])) < grain(_image(variants["coarse_speckle"]))
    plain, burned = _image(variants["default"]), _image(variants["overlay"])
    changed = burned != plain  # same seed: only the burned-in annotation differs, always brighter
    assert changed[:14].sum() > 80 and changed[14:].sum() > 20 and np.all(burned[changed] > plain[changed])
    mask = lambda name: np.asarray(Image.open(next(variants[name].rglob("*_mask.png"))))  # noqa: E731
    np.testing.assert_array_equal(mask("overlay"), mask("default"))  # the annotation is not lesion
    assert _image(variants["large"]).shape == (800, 1000) and _image(variants["deep"]).shape == (400, 260)


def _predict(inputs: Path, out: Path) -> dict[str, dict]:
    assert main(["predict", "--bundle", "breast_us_seg_2d", "--input", str(inputs), "--output", str(out),
                 "--device", "cpu", "--no-progress"]) == 0  # fmt: skip
    return {p.stem: json.loads(p.read_text()) for p in out.rglob("*.json")}


def test_the_shipped_bundle_predicts_images_of_other_machines(variants: dict[str, Path], tmp_path: Path) -> None:
    """Every variant, plus a 16-bit copy and an RGB copy with a colour-Doppler box, on its own grid."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name, folder in variants.items():
        Image.fromarray(_image(folder)).save(inputs / f"{name}.png")
    grey = _image(variants["default"])
    Image.fromarray(grey.astype(np.uint16) * 257).save(inputs / "sixteen_bit.png")
    rgb = np.repeat(grey[..., None], 3, axis=2)
    rgb[60:120, 80:160, 0] = np.maximum(rgb[60:120, 80:160, 0], 200)  # red / blue flow colours
    rgb[90:110, 100:140, 2] = 255
    Image.fromarray(rgb).save(inputs / "doppler_rgb.png")
    records = _predict(inputs, tmp_path / "out")
    assert set(records) == {*VARIANTS, "sixteen_bit", "doppler_rgb"}
    for name, record in records.items():
        mask = np.asarray(Image.open(tmp_path / "out" / f"{name}_seg.png"))
        src = Image.open(inputs / f"{name}.png")
        assert record["status"] == "ok" and mask.shape == (src.height, src.width), name
        assert set(np.unique(mask)) <= {0, 1}, name
    # the full bit depth is read and normalised per image: 16 bits give the 8-bit image's mask
    eight, sixteen = (np.asarray(Image.open(tmp_path / "out" / f"{n}_seg.png")) for n in ("default", "sixteen_bit"))
    assert np.mean(eight == sixteen) >= 0.999
    # burned-in text and calipers change nothing: no lesion in the banner, the same mask elsewhere
    burned = np.asarray(Image.open(tmp_path / "out" / "overlay_seg.png"))
    assert not burned[:14].any() and np.mean(burned == eight) >= 0.99


@pytest.mark.skipif(not BUSI.is_dir(), reason=f"BUSI development pool not at {BUSI} (see ../shared/data/SOURCES.md)")
def test_a_linear_gain_change_of_real_images_changes_no_mask(tmp_path: Path) -> None:
    """Another machine's gain preset, as a linear scaling of real BUSI images: the same masks."""
    picked = [next(p for p in sorted((BUSI / kind).glob("*.png")) if "_mask" not in p.name) for kind in ("benign", "malignant", "normal")]
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i, path in enumerate(picked):
        img = np.asarray(Image.open(path).convert("L")).astype(np.float64)
        Image.fromarray(img.astype(np.uint8)).save(inputs / f"{i}_x1.png")
        Image.fromarray(np.round(img * 0.6).astype(np.uint8)).save(inputs / f"{i}_x0.6.png")
    _predict(inputs, tmp_path / "out")
    for i in range(len(picked)):
        a, b = (np.asarray(Image.open(tmp_path / "out" / f"{i}_{g}_seg.png")) for g in ("x1", "x0.6"))
        assert np.mean(a == b) >= 0.995, i
