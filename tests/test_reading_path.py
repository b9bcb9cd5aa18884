"""One reading path: package checks open images as the bundle's own transforms do (issue 12).

Mammograms stored MONOCHROME1 (dense tissue = low stored values) are inverted by the mammography
bundle's reader; validation and fingerprints given the bundle must see the same array as its
network, not the stored values that the package's generic DICOM reader returns.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sum_monai.bundle.locate import Bundle
from sum_monai.bundle.readers import bundle_loader
from sum_monai.io.read import read_image

MAMMO = Bundle.find("mammo_seg_2d")


@pytest.fixture(scope="module")
def films(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four MONOCHROME1 DICOM phantoms and their datalist."""
    from sum_monai.datalists.build import build_datalist
    from sum_monai.phantoms import generate
    from sum_monai.workflows.data import detect_layout

    root = tmp_path_factory.mktemp("read") / "mammo"
    generate("mammo", 4, root, seed=5, size=(128, 96), monochrome1_rate=1.0, rescale_rate=0.0, progress=False, overview=False)
    out = root.parent / "datalist.json"
    build_datalist(detect_layout(root), root, out, seed=0, progress=False)
    return out


def _dicoms(datalist: Path) -> list[Path]:
    content = json.loads(datalist.read_text())
    return [datalist.parent / c["image"] for s in ("training", "validation", "test") for c in content.get(s, [])]


def test_a_bundle_loader_reads_what_the_network_is_given(films: Path) -> None:
    from monai.transforms import Compose

    from sum_monai.bundle.run import create_workflow

    path = next(p for p in _dicoms(films) if p.suffix == ".dcm")
    bundle_read = read_image(path, loader=bundle_loader(MAMMO)).numpy()
    parser = create_workflow(MAMMO, "inference").parser
    steps = [t for t in parser.get_parsed_content("preprocessing").transforms if type(t).__name__ == "LoadImaged"]
    network_side = np.asarray(Compose(steps)({"image": str(path)})["image"])
    np.testing.assert_array_equal(bundle_read, network_side)
    raw = read_image(path).numpy()  # the stored values (MONOCHROME1: inverted)
    assert raw.shape == bundle_read.shape
    # MONOCHROME1 inverted (and the VOI window applied): the stored values run the other way
    assert np.corrcoef(raw.ravel(), bundle_read.ravel())[0, 1] < -0.9


def test_validation_and_fingerprints_read_through_the_bundle(films: Path, tmp_path: Path) -> None:
    from sum_monai.plans import fingerprint
    from sum_monai.workflows.data import prepare_datalist

    assert prepare_datalist(films, tmp_path, require=(), bundle=MAMMO) == films  # every file opened by the bundle's reader
    raw = fingerprint(films)
    seen = fingerprint(films, bundle=MAMMO)
    training = [films.parent / c["image"] for c in json.loads(films.read_text())["training"]]
    load = bundle_loader(MAMMO)
    as_seen = np.concatenate([np.asarray(load(str(p))).ravel() for p in training])
    as_stored = np.concatenate([read_image(p).numpy().ravel() for p in training])
    # the fingerprint's intensities are those of the bundle's arrays (subsampled), not the stored ones
    for measured, values in ((seen, as_seen), (raw, as_stored)):
        expected = np.percentile(values, [50, 99.5])
        np.testing.assert_allclose(measured.intensity_percentiles[1:], expected, rtol=0.05, atol=0.01 * values.max())
    assert abs(seen.intensity_percentiles[1] - raw.intensity_percentiles[1]) > 0.1 * as_stored.max()
    assert seen.median_shape == raw.median_shape
