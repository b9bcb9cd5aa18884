"""Built-in phantoms: exact layouts, valid files, geometry, lesion contrast and determinism."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from scipy import ndimage

from sum_monai.cli import main
from sum_monai.errors import ConfigError, DataError
from sum_monai.phantoms import MRIParams, generate, make_params
from sum_monai.phantoms.mri import mri_affine

US = {"size": (96, 96)}
MAMMO = {"size": (256, 160)}
MRI = {"size": (80, 64, 20), "lesion_size": (3.0, 5.0)}


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def us_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("us") / "phantom_us"
    generate("us", 20, out, seed=7, progress=False, near_duplicate_rate=0.3, **US)
    return out


@pytest.fixture(scope="session")
def mammo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mammo") / "phantom_mammo"
    generate("mammo", 6, out, seed=3, progress=False, **MAMMO)
    return out


@pytest.fixture(scope="session")
def mri_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mri") / "phantom_mri"
    generate("mri", 2, out, seed=5, progress=False, **MRI)
    return out


# ---------------------------------------------------------------------------------------------- ultrasound


def test_us_layout_names_and_masks(us_dir: Path) -> None:
    names = {p.relative_to(us_dir).as_posix() for p in us_dir.rglob("*") if p.is_file()}
    assert {"overview.png", "phantom.json"} <= names
    counts = {}
    for label in ("benign", "malignant", "normal"):
        images = sorted(p for p in (us_dir / label).iterdir() if "_mask" not in p.name)
        numbers = sorted(int(re.fullmatch(rf"{label} \((\d+)\)\.png", p.name).group(1)) for p in images)
        assert numbers == list(range(1, len(images) + 1)), f"{label}: N must run 1..k"
        counts[label] = len(images)
        for image in images:
            with Image.open(image) as im:
                assert im.mode == "L" and im.size == (96, 96)
            masks = sorted(image.parent.glob(f"{image.stem}_mask*.png"))
            assert masks[0].name == f"{image.stem}_mask.png"
            assert [m.name for m in masks[1:]] == [f"{image.stem}_mask_{k}.png" for k in range(1, len(masks))]
            for mask in masks:
                arr = np.asarray(Image.open(mask))
                assert arr.dtype == np.uint8 and arr.shape == (96, 96)
                assert set(np.unique(arr)) <= {0, 255}
                assert (arr.max() == 0) == (label == "normal")
    # every file is an image or mask of a class folder, or the two extras
    assert len(names) == 2 + sum(len(list((us_dir / c).iterdir())) for c in counts)
    # class mix 45/30/25 holds closely even for 20 cases (low-discrepancy assignment)
    assert (
        abs(counts["benign"] - 9) <= 1
        and abs(counts["malignant"] - 6) <= 1
        and abs(counts["normal"] - 5) <= 1
    )


def test_us_lesions_are_hypoechoic(us_dir: Path) -> None:
    ratios = []
    for mask_path in sorted(us_dir.glob("*/*_mask.png")):
        mask = np.asarray(Image.open(mask_path)) > 0
        if not mask.any():
            continue
        image = np.asarray(Image.open(str(mask_path).replace("_mask.png", ".png")), dtype=np.float32)
        ring = ndimage.binary_dilation(mask, iterations=6) & ~ndimage.binary_dilation(mask, iterations=2)
        ratios.append(image[mask].mean() / image[ring].mean())
    assert len(ratios) >= 10
    assert max(ratios) < 0.85, "every lesion must be darker than the tissue around it"
    assert np.median(ratios) < 0.7


def test_us_near_duplicates_are_recorded_and_similar(us_dir: Path) -> None:
    manifest = json.loads((us_dir / "phantom.json").read_text())
    assert manifest["params"]["near_duplicate_rate"] == 0.3
    dups = [c for c in manifest["cases"] if c["near_duplicate_of"]]
    assert 2 <= len(dups) <= 12

    def load(rel: str) -> np.ndarray:
        return ndimage.gaussian_filter(np.asarray(Image.open(us_dir / rel), dtype=np.float32), 3)

    for case in dups:
        source = case["near_duplicate_of"]
        assert source.split("/")[0] == case["label"]  # same class
        corr = np.corrcoef(load(case["image"]).ravel(), load(source).ravel())[0, 1]
        assert corr > 0.8, (case["image"], source, corr)
    originals = [c["image"] for c in manifest["cases"] if not c["near_duplicate_of"]]
    unrelated = np.corrcoef(load(originals[0]).ravel(), load(originals[1]).ravel())[0, 1]
    assert unrelated < 0.8


def test_us_rgb_option_and_prefix_stability(us_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "rgb"
    generate("us", 3, out, seed=7, progress=False, overview=False, near_duplicate_rate=0.3, rgb=True, **US)
    first = tmp_path / "gray"
    generate("us", 3, first, seed=7, progress=False, overview=False, near_duplicate_rate=0.3, **US)
    for image in sorted(out.glob("*/*).png")):
        rgb = np.asarray(Image.open(image))
        assert rgb.shape == (96, 96, 3) and (rgb[..., 0] == rgb[..., 2]).all()
        gray = np.asarray(Image.open(us_dir / image.relative_to(out)))
        assert np.array_equal(rgb[..., 0], gray)  # same pixels as in the 20-case run
    # the first 3 cases of a 20-case run are byte-identical to a 3-case run
    for rel, data in _files(first).items():
        if rel != "phantom.json":
            assert (us_dir / rel).read_bytes() == data, rel


def test_us_speed(tmp_path: Path) -> None:
    import time

    from sum_monai.phantoms.common import case_rng
    from sum_monai.phantoms.us import UltrasoundParams, render_us_case

    params = UltrasoundParams()
    times = []
    for i in range(5):
        start = time.perf_counter()
        render_us_case(case_rng(0, "us", i), "malignant", params)
        times.append(time.perf_counter() - start)
    # the best of 5: the machine is shared, other jobs may slow single runs down
    assert min(times) < 0.1, f"a 256x256 ultrasound case must take < 0.1 s, took {min(times):.3f} s"


# ---------------------------------------------------------------------------------------------- mammography


def _rows(root: Path) -> list[dict[str, str]]:
    with (root / "cases.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["image", "mask", "patient_id", "laterality", "view", "pathology"]
        return list(reader)


def test_mammo_layout_and_case_table(mammo_dir: Path) -> None:
    rows = _rows(mammo_dir)
    per_patient: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        per_patient.setdefault(row["patient_id"], []).append(row)
        image_id = f"{row['patient_id']}_{row['laterality']}_{row['view']}"
        assert row["image"] == f"images/{image_id}.dcm" and row["mask"] == f"masks/{image_id}_mask.png"
        assert row["laterality"] in {"L", "R"} and row["view"] in {"CC", "MLO"}
        assert row["pathology"] in {"normal", "benign", "malignant"}
    assert sorted(per_patient) == [f"PH{i:04d}" for i in range(1, 7)]
    for images in per_patient.values():
        assert 2 <= len(images) <= 4
        for side in {r["laterality"] for r in images}:
            assert len({r["pathology"] for r in images if r["laterality"] == side}) == 1
    assert (
        len(list((mammo_dir / "images").iterdir())) == len(rows) == len(list((mammo_dir / "masks").iterdir()))
    )


def test_mammo_dicom_tags_and_pixels(mammo_dir: Path) -> None:
    photometrics, rescaled = set(), set()
    for row in _rows(mammo_dir):
        path = mammo_dir / row["image"]
        assert path.read_bytes()[128:132] == b"DICM"
        ds = pydicom.dcmread(path)
        assert ds.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.1.2" == ds.SOPClassUID
        assert ds.Modality == "MG" and ds.PresentationIntentType == "FOR PRESENTATION"
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 12, 11, 0)
        assert (ds.Rows, ds.Columns) == (256, 160)
        assert [float(v) for v in ds.PixelSpacing] == [0.2, 0.2] == [float(v) for v in ds.ImagerPixelSpacing]
        assert ds.ImageLaterality == row["laterality"] and ds.ViewPosition == row["view"]
        expected = {("L", "CC"): "A\\R", ("L", "MLO"): "A\\F", ("R", "CC"): "P\\L", ("R", "MLO"): "P\\F"}
        assert "\\".join(ds.PatientOrientation) == expected[(row["laterality"], row["view"])]
        assert (
            str(ds.PatientName) == f"PHANTOM^P{row['patient_id'][2:]}" and ds.PatientID == row["patient_id"]
        )
        assert "WindowCenter" in ds and "WindowWidth" in ds
        photometrics.add(ds.PhotometricInterpretation)
        if "RescaleSlope" in ds:
            assert (float(ds.RescaleSlope), float(ds.RescaleIntercept), ds.RescaleType) == (1.0, 0.0, "US")
            rescaled.add(row["patient_id"])
        stored = ds.pixel_array
        assert stored.dtype == np.uint16 and stored.max() <= 4095
        mask = np.asarray(Image.open(mammo_dir / row["mask"]))
        assert mask.shape == stored.shape and set(np.unique(mask)) <= {0, 255}
        assert (mask.max() == 0) == (row["pathology"] == "normal")
        # the nipple side's outer column is air, the chest wall's middle is tissue
        chest = slice(0, 6) if row["laterality"] == "L" else slice(-6, None)
        far = -1 if row["laterality"] == "L" else 0
        tissue = float(np.median(stored[100:156, chest]))
        air = float(np.median(stored[:, far]))
        if ds.PhotometricInterpretation == "MONOCHROME1":
            assert ds.PresentationLUTShape == "INVERSE" and tissue < air - 1000, (
                "MONOCHROME1 is stored inverted"
            )
        else:
            assert ds.PresentationLUTShape == "IDENTITY" and tissue > air + 1000
    assert photometrics == {"MONOCHROME1", "MONOCHROME2"}
    assert rescaled and len(rescaled) < 6


def test_mammo_lesion_in_both_views_and_denser(mammo_dir: Path) -> None:
    rows = [r for r in _rows(mammo_dir) if r["pathology"] != "normal"]
    assert rows, "the seed should give at least one lesion"
    for row in rows:
        ds = pydicom.dcmread(mammo_dir / row["image"])
        display = ds.pixel_array.astype(np.float32)
        if ds.PhotometricInterpretation == "MONOCHROME1":
            display = 4095 - display
        mask = np.asarray(Image.open(mammo_dir / row["mask"])) > 0
        ring = ndimage.binary_dilation(mask, iterations=8) & ~ndimage.binary_dilation(mask, iterations=3)
        assert display[mask].mean() > display[ring].mean() + 100, row["image"]


def test_mammo_readable_by_itk(mammo_dir: Path) -> None:
    """ITK/GDCM reads both kinds; note GDCM returns MONOCHROME1 already inverted (display sense)."""
    itk = pytest.importorskip("itk")
    seen = set()
    for row in _rows(mammo_dir):
        ds = pydicom.dcmread(mammo_dir / row["image"])
        if ds.PhotometricInterpretation in seen:
            continue
        seen.add(ds.PhotometricInterpretation)
        image = itk.imread(str(mammo_dir / row["image"]))
        arr = itk.array_from_image(image).squeeze()
        assert np.allclose(tuple(itk.spacing(image))[:2], (0.2, 0.2))
        if ds.PhotometricInterpretation == "MONOCHROME1":
            assert np.array_equal(arr, 4095 - ds.pixel_array)
        else:
            assert np.array_equal(arr, ds.pixel_array)
    assert seen == {"MONOCHROME1", "MONOCHROME2"}


# ---------------------------------------------------------------------------------------------- MRI


def test_mri_layout_nifti_geometry_and_dataset_json(mri_dir: Path) -> None:
    spec = json.loads((mri_dir / "dataset.json").read_text())
    assert spec["channel_names"] == {"0": "pre", "1": "post1"}
    assert spec["labels"] == {"background": 0, "tumour": 1}
    assert spec["numTraining"] == 2 and spec["file_ending"] == ".nii.gz" and spec["name"]
    params = make_params("mri", **MRI)
    for case in ("breast_0001", "breast_0002"):
        label = nib.load(mri_dir / "labelsTr" / f"{case}.nii.gz")
        lab = np.asarray(label.dataobj)
        assert lab.dtype == np.uint8 and set(np.unique(lab)) == {0, 1} and lab.shape == (80, 64, 20)
        for c in (0, 1):
            img = nib.load(mri_dir / "imagesTr" / f"{case}_{c:04d}.nii.gz")
            assert img.shape == (80, 64, 20) and img.get_data_dtype() == np.int16
            assert np.allclose(img.header.get_zooms(), (0.8, 0.8, 2.0))
            assert np.allclose(img.affine, mri_affine(params), atol=1e-4) and np.allclose(
                img.affine, label.affine
            )
            # RAS: i runs to the patient's left (x decreasing), j to posterior (y decreasing)
            assert img.affine[0, 0] < 0 and img.affine[1, 1] < 0 and img.affine[2, 2] > 0
        for channel in ("pre", "post1"):
            assert sorted(p.name for p in (mri_dir / "dicom" / case / channel).iterdir()) == [
                f"{k:04d}.dcm" for k in range(1, 21)
            ]


def test_mri_dicom_series_uids(mri_dir: Path) -> None:
    pre = [pydicom.dcmread(p) for p in sorted((mri_dir / "dicom/breast_0001/pre").iterdir())]
    post = [pydicom.dcmread(p) for p in sorted((mri_dir / "dicom/breast_0001/post1").iterdir())]
    other = pydicom.dcmread(next((mri_dir / "dicom/breast_0002/pre").iterdir()))
    assert pre[0].SOPClassUID == "1.2.840.10008.5.1.4.1.1.4" and pre[0].Modality == "MR"
    assert len({ds.StudyInstanceUID for ds in pre + post}) == 1
    assert len({ds.FrameOfReferenceUID for ds in pre + post}) == 1
    assert {ds.SeriesInstanceUID for ds in pre}.isdisjoint({ds.SeriesInstanceUID for ds in post})
    assert len({ds.SOPInstanceUID for ds in pre + post}) == 40
    assert all(ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID for ds in pre + post)
    assert other.StudyInstanceUID != pre[0].StudyInstanceUID
    z = [float(ds.ImagePositionPatient[2]) for ds in pre]
    assert np.allclose(np.diff(z), 2.0) and all(float(ds.SpacingBetweenSlices) == 2.0 for ds in pre)
    assert [float(v) for v in pre[0].ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]


def test_mri_dicom_equals_nifti_through_itk_reader(mri_dir: Path) -> None:
    from monai.data import ITKReader
    from monai.transforms import LoadImage

    load = LoadImage(reader=ITKReader(), image_only=True)
    for c, channel in enumerate(("pre", "post1")):
        from_nifti = load(str(mri_dir / "imagesTr" / f"breast_0001_{c:04d}.nii.gz"))
        from_dicom = load(str(mri_dir / "dicom" / "breast_0001" / channel))
        assert from_nifti.shape == from_dicom.shape == (80, 64, 20)
        assert np.allclose(from_nifti.affine.numpy(), from_dicom.affine.numpy(), atol=1e-3)
        assert np.array_equal(from_nifti.numpy(), from_dicom.numpy())


def test_mri_tumour_enhances_far_more_than_parenchyma(mri_dir: Path) -> None:
    for case in ("breast_0001", "breast_0002"):
        pre = np.asarray(nib.load(mri_dir / "imagesTr" / f"{case}_0000.nii.gz").dataobj).astype(np.float32)
        post = np.asarray(nib.load(mri_dir / "imagesTr" / f"{case}_0001.nii.gz").dataobj).astype(np.float32)
        tumour = np.asarray(nib.load(mri_dir / "labelsTr" / f"{case}.nii.gz").dataobj) > 0
        near = ndimage.binary_dilation(tumour, iterations=3)
        # fibroglandular tissue: breast voxels (anterior half) with FGT-like pre-contrast signal
        anterior = np.zeros_like(tumour)
        anterior[:, : int(0.45 * pre.shape[1])] = True
        fgt = anterior & ~near & (pre > 250) & (pre < 450)
        assert tumour.sum() > 20 and fgt.sum() > 200
        tumour_gain = post[tumour].mean() / pre[tumour].mean()
        fgt_gain = np.median(post[fgt] / pre[fgt])
        assert tumour_gain > 2.0 and fgt_gain < 1.4 and tumour_gain > fgt_gain + 1.0
        # on the pre-contrast image the tumour looks like fibroglandular tissue, not like fat
        assert abs(pre[tumour].mean() / pre[fgt].mean() - 1.0) < 0.3
        fat = anterior & ~near & (pre > 700)
        assert abs(pre[tumour].mean() - pre[fgt].mean()) < abs(pre[tumour].mean() - pre[fat].mean())


def test_mri_dicom_only_format(tmp_path: Path) -> None:
    out = tmp_path / "mri_dicom"
    generate("mri", 1, out, seed=1, progress=False, format="dicom", **MRI)
    assert not (out / "imagesTr").exists()
    assert (out / "labelsTr" / "breast_0001.nii.gz").is_file() and (out / "dataset.json").is_file()
    assert len(list((out / "dicom" / "breast_0001" / "post1").iterdir())) == 20
    assert (out / "overview.png").is_file()  # drawn from the DICOM series


# ---------------------------------------------------------------------------------------------- all


@pytest.mark.parametrize(
    ("modality", "n", "settings", "fixture"),
    [
        ("us", 20, {**US, "near_duplicate_rate": 0.3}, "us_dir"),
        ("mammo", 6, MAMMO, "mammo_dir"),
        ("mri", 2, MRI, "mri_dir"),
    ],
)
def test_same_seed_gives_identical_bytes(
    modality: str, n: int, settings: dict, fixture: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    first = request.getfixturevalue(fixture)
    seed = {"us": 7, "mammo": 3, "mri": 5}[modality]
    again = tmp_path / first.name
    generate(modality, n, again, seed=seed, progress=False, **settings)
    a, b = _files(first), _files(again)
    assert sorted(a) == sorted(b)
    different = [name for name in a if a[name] != b[name]]
    assert different == []
    if modality == "us":  # another seed gives other images
        other = tmp_path / "other"
        generate(modality, 2, other, seed=seed + 1, progress=False, overview=False, **settings)
        assert _files(other)["benign/benign (1).png"] != a["benign/benign (1).png"]


@pytest.mark.parametrize("fixture", ["us_dir", "mammo_dir", "mri_dir"])
def test_overview_png(fixture: str, request: pytest.FixtureRequest) -> None:
    root = request.getfixturevalue(fixture)
    with Image.open(root / "overview.png") as im:
        width, height = im.size
        assert im.format == "PNG" and 500 <= width <= 1200 and 150 <= height <= 1200
        pixels = np.asarray(im.convert("RGB")).astype(int)
    # red contours are drawn on top of the gray images
    red = (pixels[..., 0] > 200) & (pixels[..., 1] < 80) & (pixels[..., 2] < 80)
    assert red.sum() > 50


def test_refuses_non_empty_folders_and_replaces_only_phantoms(tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="not empty; use --overwrite"):
        generate("us", 1, foreign, progress=False, **US)
    with pytest.raises(DataError, match=r"no phantom\.json"):
        generate("us", 1, foreign, progress=False, overwrite=True, **US)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]

    empty = tmp_path / "empty"
    empty.mkdir()
    generate("us", 2, empty, progress=False, overview=False, **US)  # an empty folder is fine
    with pytest.raises(DataError, match="not empty"):
        generate("us", 3, empty, progress=False, **US)
    generate("us", 3, empty, progress=False, overwrite=True, overview=False, **US)
    assert json.loads((empty / "phantom.json").read_text())["n"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "mine"]  # no temporary leftovers


def test_a_failed_run_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sum_monai.io.writers as writers

    real = writers.save_png
    calls = {"n": 0}

    def failing(path, array):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] > 5:
            raise OSError("disk full (simulated)")
        return real(path, array)

    monkeypatch.setattr(writers, "save_png", failing)
    with pytest.raises(OSError, match="simulated"):
        generate("us", 10, tmp_path / "out", progress=False, **US)
    assert list(tmp_path.iterdir()) == []


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown us phantom setting"):
        make_params("us", lesion_kontrast=0.5)
    with pytest.raises(ConfigError, match="lesion_contrast must be in"):
        make_params("us", lesion_contrast=1.5)
    with pytest.raises(ConfigError, match="unknown phantom modality"):
        make_params("ct")
    with pytest.raises(ConfigError, match="format must be one of"):
        make_params("mri", format="dcm")
    with pytest.raises(ValueError, match="spacing must be 3 positive"):
        MRIParams(spacing=(0.8, 0.8, 0.0))
    with pytest.raises(ConfigError, match="n must be a positive"):
        generate("us", 0, "never-written")
    assert not Path("never-written").exists()


def test_cli_synth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli_us"
    argv = ["synth", "--modality", "us", "--n", "3", "--out", str(out), "--size", "64", "64", "--no-progress"]
    assert main([*argv, "--lesion-contrast", "0.5", "--class-mix", "1", "0", "0"]) == 0
    assert len(list((out / "benign").glob("*).png"))) == 3
    assert json.loads((out / "phantom.json").read_text())["params"]["lesion_contrast"] == 0.5
    assert main(argv) == 2  # exists, no --overwrite
    assert "not empty" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "--format", "nifti"]) == 2
    assert "--format do(es) not apply to --modality us" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "--size", "64", "64", "64"]) == 2


# ---------------------------------------------------------------------------------------------- learnability


@pytest.mark.slow
def test_default_ultrasound_phantoms_are_learnable(tmp_path: Path) -> None:
    """A small 2D UNet trained on 60 default phantoms at 128x128 reaches Dice >= 0.85 held out.

    100 epochs of 8 batches take about 1.5 minutes on one CPU core (a fixed number of epochs,
    not a time budget, so the result does not depend on the machine's load).
    """
    import torch
    from monai.losses import DiceCELoss
    from monai.metrics import DiceMetric
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    torch.set_num_threads(1)
    root = tmp_path / "us"
    generate("us", 90, root, seed=11, progress=False, overview=False)  # default difficulty and class mix

    def load(image_path: Path) -> tuple[np.ndarray, np.ndarray]:
        image = Image.open(image_path).resize((128, 128), Image.BILINEAR)
        masks = [
            np.asarray(Image.open(m).resize((128, 128), Image.NEAREST)) > 0
            for m in image_path.parent.glob(f"{image_path.stem}_mask*.png")
        ]
        return np.asarray(image, np.float32) / 255.0, np.any(masks, axis=0).astype(np.float32)

    cases = [load(root / c["image"]) for c in json.loads((root / "phantom.json").read_text())["cases"]]
    x = torch.tensor(np.stack([c[0] for c in cases]))[:, None]
    y = torch.tensor(np.stack([c[1] for c in cases]))[:, None]
    x_train, y_train, x_test, y_test = x[:60], y[:60], x[60:], y[60:]
    lesion = y_test.flatten(1).sum(1) > 0  # Dice is undefined on normal cases
    x_test, y_test = x_test[lesion], y_test[lesion]
    assert len(x_test) >= 18
    net = UNet(2, 1, 1, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=1)
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    loss_fn = DiceCELoss(sigmoid=True)
    for _ in range(100):
        net.train()
        for idx in torch.randperm(60).split(8):
            xb, yb = x_train[idx], y_train[idx]
            if torch.rand(1) < 0.5:
                xb, yb = xb.flip(-1), yb.flip(-1)
            opt.zero_grad()
            loss_fn(net(xb), yb).backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        pred = (torch.sigmoid(net(x_test)) > 0.5).float()
    dice = DiceMetric(include_background=True, reduction="mean")(pred, y_test).mean().item()
    assert dice >= 0.85, f"held-out Dice {dice:.3f}"
