"""`sum-monai predict` on phantoms of each modality: geometry, values, JSON numbers, DICOM SEG, failures.

Weights: the bundle's network, seeded random init, with the biases of its output layer shifted
so that a set share of each phantom is predicted as lesion (:func:`calibrated_weights`). That
gives non-trivial masks whose outlines follow the image content, in a second instead of a
training run; the numbers checked here are geometry and bookkeeping, not accuracy.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image
from scipy import ndimage

from sum_monai.bundle.locate import Bundle
from sum_monai.bundle.run import create_workflow
from sum_monai.cli import main

#: Small, fast settings of each bundle (the networks are size-agnostic).
OVERRIDES = {
    # the random-init weights below give speckled masks that the bundle's island filter would empty
    # (and the shipped operating point, chosen for trained weights, would drop their weak lesions)
    "breast_us_seg_2d": {"image_size": 64, "min_lesion_fraction": 0.0, "lesion_threshold": 0.5},
    "mammo_seg_2d": {"image_size": 128, "lesion_threshold": 0.5},
    "breast_mri_seg_3d": {"roi_size": [32, 32, 16]},
}
MRI_SPACING = (0.8, 0.8, 2.0)
MG_SPACING = 0.2


# -- helpers shared with test_exports.py ----------------------------------------------------------


def make_phantoms(modality: str, out: Path) -> Path:
    """Small phantoms: odd sizes, so resize / pad / resample must be undone exactly."""
    from sum_monai.phantoms import generate

    settings = {
        "us": {"n": 3, "size": (90, 120)},
        "mammo": {"n": 2, "size": (300, 200), "monochrome1_rate": 0.5},
        "mri": {"n": 2, "size": (48, 40, 16), "spacing": MRI_SPACING},
    }[modality]
    n = settings.pop("n")
    generate(modality, n, out, seed=7, progress=False, overview=False, **settings)
    return out


def set_flags(overrides: dict) -> list[str]:
    return [arg for key, value in overrides.items() for arg in ("--set", f"{key}={json.dumps(value)}")]


def calibrated_weights(bundle_name: str, inputs: list, out: Path, share: float = 0.15) -> Path:
    """Random-init weights whose output biases make about ``share`` of the inputs lesion.

    The last bias of the network shifts each class logit by a constant (checked below), so it is
    set to the quantile of the logit differences that leaves ``share`` of the voxels above zero
    (3 classes: ``share`` for class 1 and ``share / 2`` for class 2).
    """
    bundle = Bundle.find(bundle_name)
    parser = create_workflow(
        # ckpt_path beside the calibrated file: the ensemble inferer adds no shipped fold*.pt members
        bundle, "inference", {**OVERRIDES[bundle_name], "device": "$torch.device('cpu')", "ckpt_path": str(out / f"{bundle_name}.pt")}
    ).parser
    torch.manual_seed(0)
    net = parser.get_parsed_content("network_def").eval()
    pre, inferer = parser.get_parsed_content("preprocessing"), parser.get_parsed_content("inferer")
    with torch.no_grad():
        logits = [inferer(pre({"image": i})["image"][None], net)[0].flatten(1) for i in inputs]
    z = torch.cat(logits, dim=1)
    state = net.state_dict()
    n_classes = z.shape[0]
    key = [k for k, v in state.items() if k.endswith("bias") and v.shape == (n_classes,)][-1]
    shares = [share] if n_classes == 2 else [share, share / 2]
    for c, s in enumerate(shares, start=1):
        state[key][c] -= torch.quantile(z[c] - z[0], 1.0 - s)
    path = out / f"{bundle_name}.pt"
    torch.save(state, path)
    return path


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return 2.0 * float((a & b).sum()) / max(1, int(a.sum() + b.sum()))


def seg_frames(path: Path) -> tuple[pydicom.Dataset, dict[str, dict[str, np.ndarray]]]:
    """A DICOM SEG read with pydicom only: ``{segment label: {source SOPInstanceUID: frame}}``."""
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array
    pixels = pixels[None] if pixels.ndim == 2 else pixels
    labels = {s.SegmentNumber: s.SegmentLabel for s in ds.SegmentSequence}
    frames: dict[str, dict[str, np.ndarray]] = {}
    shared = ds.SharedFunctionalGroupsSequence[0]
    for f, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        # a functional group is per frame, or shared by all frames (e.g. with a single segment)
        identification = item.get("SegmentIdentificationSequence") or shared.SegmentIdentificationSequence
        number = identification[0].ReferencedSegmentNumber
        uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        frames.setdefault(labels[number], {})[uid] = pixels[f].astype(bool)
    return ds, frames


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def check_json_against_mask(
    record: dict, mask: np.ndarray, class_names: list[str], unit_size: float | None
) -> None:
    """The per-case numbers recomputed from the written mask with scipy."""
    m = record["measurements"]
    fg = mask > 0
    assert m["lesion_pixels"] == int(fg.sum())
    _, n_components = ndimage.label(fg, structure=np.ones((3,) * mask.ndim))
    assert m["lesion_count"] == n_components == len(m["lesions"])
    assert sum(lesion["pixels"] for lesion in m["lesions"]) == int(fg.sum())
    assert m["class_pixels"] == {name: int((mask == i).sum()) for i, name in enumerate(class_names)}
    size_key = "lesion_area_mm2" if mask.ndim == 2 else "lesion_volume_mm3"
    if unit_size is None:
        assert m[size_key] is None
    else:
        assert m[size_key] == pytest.approx(fg.sum() * unit_size, rel=1e-4)
    present = sorted(int(v) for v in np.unique(mask) if v > 0)
    assert m["predicted_class"] == (class_names[present[-1]] if present else "normal")
    if fg.any():  # argmax chose a lesion class, so p(background) < 0.5 there
        assert 0.5 <= m["probability"]["lesion_mean"] <= m["probability"]["lesion_max"] <= 1.0
        assert m["probability"]["image_max"] >= m["probability"]["lesion_max"]


# -- ultrasound: PNG folder -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def us_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("us")
    data = make_phantoms("us", root / "us")
    images = sorted(p for p in data.rglob("*.png") if "_mask" not in p.name)
    weights = calibrated_weights("breast_us_seg_2d", [str(p) for p in images], root)
    out = root / "pred"
    status = main([
        "predict", "--bundle", "breast_us_seg_2d", "--weights", str(weights), "--input", str(data),
        "--output", str(out), "--device", "cpu", "--pixel-spacing", "0.1", "--no-progress",
        *set_flags(OVERRIDES["breast_us_seg_2d"]),
    ])  # fmt: skip
    return {"status": status, "data": data, "images": images, "out": out, "weights": weights}


def test_us_masks_are_pngs_of_the_input_size_with_labels_0_1(us_run: dict) -> None:
    assert us_run["status"] == 0
    masks = []
    for image in us_run["images"]:
        rel = image.relative_to(us_run["data"])
        mask_path = us_run["out"] / rel.parent / f"{image.stem}_seg.png"
        src, mask = Image.open(image), Image.open(mask_path)
        assert mask.size == src.size == (120, 90)
        arr = np.asarray(mask)
        assert set(np.unique(arr)) <= {0, 1}
        masks.append(arr)
    share = np.mean([m.mean() for m in masks])
    assert 0.03 < share < 0.5, f"calibrated weights should give non-trivial masks, got {share:.3f}"
    # mask files are skipped as inputs; no scratch folder is left behind
    assert not list(us_run["out"].rglob("*_mask_seg.png"))
    assert not [p for p in us_run["out"].iterdir() if p.name.startswith(".")]


def test_us_json_and_csv_numbers_match_the_masks(us_run: dict) -> None:
    rows = {r["case"]: r for r in read_csv(us_run["out"] / "predictions.csv")}
    assert len(rows) == len(us_run["images"])
    for image in us_run["images"]:
        rel = image.relative_to(us_run["data"])
        name = str(rel.parent / image.stem)
        record = json.loads((us_run["out"] / f"{name}.json").read_text())
        mask = np.asarray(Image.open(us_run["out"] / f"{name}_seg.png")).T  # MONAI (W, H) order
        assert record["status"] == "ok" and record["spatial_shape"] == [120, 90]
        assert record["spacing_mm"] == [0.1, 0.1] and record["spacing_source"] == "--pixel-spacing"
        check_json_against_mask(record, mask, ["background", "lesion"], unit_size=0.01)
        row = rows[name]
        assert row["status"] == "ok" and row["case_id"].startswith("case-") and name not in row["case_id"]
        assert int(row["lesion_count"]) == record["measurements"]["lesion_count"]
        assert float(row["lesion_area_mm2"]) == pytest.approx(record["measurements"]["lesion_area_mm2"])
        assert row["dicom_seg"] == "" and record["outputs"]["dicom_seg"] is None


def test_a_corrupt_file_is_skipped_and_reported(
    us_run: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = tmp_path / "mixed"
    data.mkdir()
    good = us_run["images"][:2]
    for p in good:
        shutil.copy(p, data / p.name)
    (data / "truncated.png").write_bytes(good[0].read_bytes()[:200])
    (data / "empty.png").write_bytes(b"")
    out = tmp_path / "pred"
    status = main([
        "predict", "--bundle", "breast_us_seg_2d", "--weights", str(us_run["weights"]), "--input", str(data),
        "--output", str(out), "--device", "cpu", "--no-progress", *set_flags(OVERRIDES["breast_us_seg_2d"]),
    ])  # fmt: skip
    assert status == 1
    err = capsys.readouterr().err
    assert "2 case(s) failed" in err and "truncated.png" in err and "empty.png: file is empty" in err
    for p in good:
        assert (out / f"{p.stem}_seg.png").is_file() and (out / f"{p.stem}.json").is_file()
    assert not (out / "truncated_seg.png").exists() and not (out / "truncated.json").exists()
    rows = {r["case"]: r for r in read_csv(out / "predictions.csv")}
    assert {k: r["status"] for k, r in rows.items()} == {
        good[0].stem: "ok",
        good[1].stem: "ok",
        "truncated": "failed",
        "empty": "failed",
    }
    assert (
        "truncated.png" in rows["truncated"]["error"] and "corrupt or truncated" in rows["truncated"]["error"]
    )


def test_batched_prediction_gives_the_masks_of_one_at_a_time(us_run: dict, tmp_path: Path) -> None:
    """Cases of other sizes share a batch (same preprocessed shape) and each gets its own grid back;
    a corrupt file between them fails alone; records keep the input order; worker processes alike."""
    data = tmp_path / "mixed"
    data.mkdir()
    for i, p in enumerate(us_run["images"]):
        shutil.copy(p, data / f"c{i}a.png")
        Image.open(p).resize((97, 61)).save(data / f"c{i}b.png")
    (data / "c1c.png").write_bytes(us_run["images"][0].read_bytes()[:300])
    runs = {}
    for name, extra in {"one": ["--batch-size", "1"], "batch": ["--batch-size", "4"],
                        "workers": ["--batch-size", "3", "--workers", "1"]}.items():  # fmt: skip
        out = tmp_path / name
        assert main([
            "predict", "--bundle", "breast_us_seg_2d", "--weights", str(us_run["weights"]), "--input", str(data),
            "--output", str(out), "--device", "cpu", "--no-progress", *extra, *set_flags(OVERRIDES["breast_us_seg_2d"]),
        ]) == 1  # fmt: skip
        runs[name] = out
    order = [r["case"] for r in read_csv(runs["one"] / "predictions.csv")]
    assert order == sorted(p.stem for p in data.iterdir())
    for name in ("batch", "workers"):
        rows = read_csv(runs[name] / "predictions.csv")
        assert [r["case"] for r in rows] == order and [r["status"] for r in rows].count("failed") == 1
        for case in order:
            if case == "c1c":
                assert not (runs[name] / "c1c_seg.png").exists()
                continue
            one = np.asarray(Image.open(runs["one"] / f"{case}_seg.png"))
            batched = np.asarray(Image.open(runs[name] / f"{case}_seg.png"))
            assert batched.shape == one.shape == ((61, 97) if case.endswith("b") else (90, 120))
            assert np.mean(batched == one) >= 0.999, (name, case)
            a, b = (json.loads((runs[n] / f"{case}.json").read_text())["measurements"] for n in ("one", name))
            assert b["lesion_count"] == a["lesion_count"]


def test_usage_and_config_errors_exit_2(us_run: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base = ["predict", "--bundle", "breast_us_seg_2d", "--output", str(tmp_path / "o"), "--no-progress"]
    assert main([*base, "--input", str(tmp_path / "nowhere.png"), "--weights", str(us_run["weights"])]) == 2
    assert "input not found" in capsys.readouterr().err
    assert main([*base, "--input", str(us_run["images"][0]), "--weights", str(tmp_path / "none.pt")]) == 2
    assert "none.pt: checkpoint not found" in capsys.readouterr().err
    assert main([*base, "--input", str(us_run["images"][0]), "--model", "m.onnx"]) == 2
    assert not list((tmp_path / "o").rglob("*_seg.*"))


# -- mammography: DICOM MG -> PNG mask + 3-segment DICOM SEG ---------------------------------------


@pytest.fixture(scope="module")
def mammo_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("mammo")
    data = make_phantoms("mammo", root / "mammo") / "images"
    images = sorted(data.glob("*.dcm"))
    weights = calibrated_weights("mammo_seg_2d", [str(p) for p in images], root)
    out = root / "pred"
    status = main([
        "predict", "--bundle", "mammo_seg_2d", "--weights", str(weights), "--input", str(data),
        "--output", str(out), "--device", "cpu", "--no-progress", *set_flags(OVERRIDES["mammo_seg_2d"]),
    ])  # fmt: skip
    return {"status": status, "images": images, "out": out, "weights": weights}


def test_mammo_masks_have_the_dicom_size_and_three_classes(mammo_run: dict) -> None:
    assert mammo_run["status"] == 0
    photometric = set()
    counts = np.zeros(3)
    for image in mammo_run["images"]:
        src = pydicom.dcmread(image)
        photometric.add(src.PhotometricInterpretation)
        mask = np.asarray(Image.open(mammo_run["out"] / f"{image.stem}_seg.png"))
        assert mask.shape == (src.Rows, src.Columns) == (300, 200)
        assert set(np.unique(mask)) <= {0, 1, 2}
        counts += np.bincount(mask.ravel(), minlength=3)
        record = json.loads((mammo_run["out"] / f"{image.stem}.json").read_text())
        assert (
            record["spacing_mm"] == [MG_SPACING, MG_SPACING]
            and record["spacing_source"] == "DICOM PixelSpacing"
        )
        check_json_against_mask(
            record, mask.T, ["background", "benign", "malignant"], unit_size=MG_SPACING**2
        )
        assert record["measurements"]["predicted_class"] in ("normal", "benign", "malignant")
    assert photometric == {"MONOCHROME1", "MONOCHROME2"}  # both stored polarities were predicted
    assert counts[1] > 0 and counts[2] > 0, "benign and malignant should both appear"


def test_mammo_dicom_seg_round_trips(mammo_run: dict) -> None:
    from sum_monai.predict.tissue import breast_region, presented_image

    for image in mammo_run["images"]:
        src = pydicom.dcmread(image)
        mask = np.asarray(Image.open(mammo_run["out"] / f"{image.stem}_seg.png"))
        seg, frames = seg_frames(mammo_run["out"] / f"{image.stem}_seg.dcm")
        assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
        assert seg.StudyInstanceUID == src.StudyInstanceUID and seg.PatientID == src.PatientID
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == src.SeriesInstanceUID
        assert [
            i.ReferencedSOPInstanceUID for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
        ] == [src.SOPInstanceUID]
        assert list(frames) == ["normal breast tissue", "benign lesion", "malignant lesion"]
        types = [
            (
                s.SegmentedPropertyTypeCodeSequence[0].CodeMeaning,
                s.get("SegmentedPropertyTypeModifierCodeSequence"),
            )
            for s in seg.SegmentSequence
        ]
        assert types[0] == ("Breast", None)
        assert [(t, m[0].CodeMeaning) for t, m in types[1:]] == [("Mass", "Benign"), ("Mass", "Malignant")]
        benign, malignant = (
            frames["benign lesion"][src.SOPInstanceUID],
            frames["malignant lesion"][src.SOPInstanceUID],
        )
        normal = frames["normal breast tissue"][src.SOPInstanceUID]
        np.testing.assert_array_equal(benign, mask == 1)
        np.testing.assert_array_equal(malignant, mask == 2)
        region = breast_region(presented_image(src))
        np.testing.assert_array_equal(normal, region & (mask == 0))
        assert 0.2 < normal.mean() < 0.9  # a breast outline, not the whole image or nothing


def test_mammo_masks_follow_the_image_when_it_is_mirrored(mammo_run: dict, tmp_path: Path) -> None:
    """A right view and its mirror image tagged as a left view reach the network as the same
    chest-wall-left image, so the masks must be mirror images of each other on the input grids
    (the bundle's breast flip is undone by Invertd)."""
    from pydicom.uid import generate_uid

    right = next(p for p in mammo_run["images"] if "_R_CC" in p.name)
    ds = pydicom.dcmread(right)
    assert list(ds.PatientOrientation) == ["P", "L"]  # shown with the chest wall on the right
    mirrored = pydicom.dcmread(right)
    mirrored.PixelData = np.ascontiguousarray(np.fliplr(ds.pixel_array)).tobytes()
    mirrored.PatientOrientation, mirrored.ImageLaterality = ["A", "R"], "L"
    mirrored.SOPInstanceUID = mirrored.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    data = tmp_path / "mg"
    data.mkdir()
    shutil.copy(right, data / right.name)
    mirrored.save_as(data / "mirrored.dcm")
    out = tmp_path / "pred"
    status = main([
        "predict", "--bundle", "mammo_seg_2d", "--weights", str(mammo_run["weights"]), "--input", str(data),
        "--output", str(out), "--device", "cpu", "--no-progress", *set_flags(OVERRIDES["mammo_seg_2d"]),
    ])  # fmt: skip
    assert status == 0
    mask = np.asarray(Image.open(out / f"{right.stem}_seg.png"))
    mask_mirrored = np.asarray(Image.open(out / "mirrored_seg.png"))
    assert (mask != np.fliplr(mask)).mean() > 0.01  # not left-right symmetric: the check means something
    np.testing.assert_array_equal(mask_mirrored, np.fliplr(mask))


def test_a_dicom_without_pixel_data_is_reported(mammo_run: dict, tmp_path: Path) -> None:
    data = tmp_path / "mg"
    data.mkdir()
    good = mammo_run["images"][0]
    shutil.copy(good, data / good.name)
    ds = pydicom.dcmread(good)
    del ds.PixelData
    ds.save_as(data / "nopixels.dcm")
    out = tmp_path / "pred"
    status = main([
        "predict", "--bundle", "mammo_seg_2d", "--weights", str(mammo_run["weights"]), "--input", str(data),
        "--output", str(out), "--device", "cpu", "--no-progress", *set_flags(OVERRIDES["mammo_seg_2d"]),
    ])  # fmt: skip
    assert status == 1
    rows = {r["case"]: r for r in read_csv(out / "predictions.csv")}
    assert rows[good.stem]["status"] == "ok" and (out / f"{good.stem}_seg.dcm").is_file()
    assert rows["nopixels"]["status"] == "failed" and "no pixel data" in rows["nopixels"]["error"]
    assert not (out / "nopixels_seg.dcm").exists()


# -- MRI: nnU-Net NIfTI pairs, 4D NIfTI, DICOM series folders --------------------------------------


@pytest.fixture(scope="module")
def mri_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    import nibabel as nib

    root = tmp_path_factory.mktemp("mri")
    data = make_phantoms("mri", root / "mri")
    inputs = root / "inputs"
    shutil.copytree(data / "imagesTr", inputs)  # breast_0001_0000/_0001, breast_0002_...
    shutil.copytree(data / "dicom" / "breast_0001", inputs / "dicom_0001")  # pre/ + post1/
    pre, post = (nib.load(data / "imagesTr" / f"breast_0002_000{c}.nii.gz") for c in (0, 1))
    stacked = np.stack([np.asarray(pre.dataobj), np.asarray(post.dataobj)], axis=-1)
    nib.save(nib.Nifti1Image(stacked, pre.affine), inputs / "fourd.nii.gz")
    pairs = [[str(data / "imagesTr" / f"breast_000{i}_000{c}.nii.gz") for c in (0, 1)] for i in (1, 2)]
    weights = calibrated_weights("breast_mri_seg_3d", pairs, root)
    out = root / "pred"
    status = main([
        "predict", "--bundle", "breast_mri_seg_3d", "--weights", str(weights), "--input", str(inputs),
        "--output", str(out), "--device", "cpu", "--no-progress", *set_flags(OVERRIDES["breast_mri_seg_3d"]),
    ])  # fmt: skip
    return {"status": status, "data": data, "out": out, "weights": weights}


def test_mri_masks_keep_the_input_affine_and_shape(mri_run: dict) -> None:
    import nibabel as nib

    assert mri_run["status"] == 0
    out, data = mri_run["out"], mri_run["data"]
    expected = {
        "breast_0001": "breast_0001",
        "breast_0002": "breast_0002",
        "dicom_0001": "breast_0001",
        "fourd": "breast_0002",
    }
    masks = {}
    for case, source in expected.items():
        ref = nib.load(data / "imagesTr" / f"{source}_0000.nii.gz")
        mask = nib.load(out / f"{case}_seg.nii.gz")
        assert mask.shape == ref.shape == (48, 40, 16)
        np.testing.assert_allclose(mask.affine, ref.affine, atol=1e-5)
        arr = np.asarray(mask.dataobj)
        assert arr.dtype == np.uint8 and set(np.unique(arr)) <= {0, 1}
        masks[case] = arr
        record = json.loads((out / f"{case}.json").read_text())
        assert record["spacing_mm"] == pytest.approx(list(MRI_SPACING), abs=1e-5)
        check_json_against_mask(record, arr, ["background", "tumour"], unit_size=float(np.prod(MRI_SPACING)))
    assert 0.03 < masks["breast_0001"].mean() < 0.5
    # the same case read from NIfTI, 4D NIfTI or DICOM series gives the same mask
    np.testing.assert_array_equal(masks["dicom_0001"], masks["breast_0001"])
    np.testing.assert_array_equal(masks["fourd"], masks["breast_0002"])
    assert {r["case"] for r in read_csv(out / "predictions.csv")} == set(expected)


def test_mri_masks_follow_the_voxel_order_of_the_input(mri_run: dict, tmp_path: Path) -> None:
    """The same volume stored with its x axis reversed (affine adjusted: same world positions)
    must give the mask with its x axis reversed, and keep its own affine."""
    import nibabel as nib

    data = tmp_path / "flipped"
    data.mkdir()
    for c in (0, 1):
        img = nib.load(mri_run["data"] / "imagesTr" / f"breast_0001_000{c}.nii.gz")
        flip = np.eye(4)
        flip[0, 0], flip[0, 3] = -1.0, img.shape[0] - 1
        nib.save(
            nib.Nifti1Image(np.asarray(img.dataobj)[::-1], img.affine @ flip), data / f"flipped_000{c}.nii.gz"
        )
    out = tmp_path / "pred"
    status = main([
        "predict", "--bundle", "breast_mri_seg_3d", "--weights", str(mri_run["weights"]), "--input", str(data),
        "--output", str(out), "--device", "cpu", "--no-progress", *set_flags(OVERRIDES["breast_mri_seg_3d"]),
    ])  # fmt: skip
    assert status == 0
    original = np.asarray(nib.load(mri_run["out"] / "breast_0001_seg.nii.gz").dataobj)
    flipped = nib.load(out / "flipped_seg.nii.gz")
    np.testing.assert_allclose(flipped.affine, nib.load(data / "flipped_0000.nii.gz").affine, atol=1e-5)
    assert (original != original[::-1]).mean() > 0.01
    np.testing.assert_array_equal(np.asarray(flipped.dataobj), original[::-1])


def test_mri_dicom_seg_references_the_pre_contrast_series(mri_run: dict) -> None:
    import nibabel as nib

    pre = sorted((mri_run["data"] / "dicom" / "breast_0001" / "pre").glob("*.dcm"))
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in pre]
    mask = np.asarray(nib.load(mri_run["out"] / "dicom_0001_seg.nii.gz").dataobj)
    seg, frames = seg_frames(mri_run["out"] / "dicom_0001_seg.dcm")
    assert seg.Modality == "SEG" and list(frames) == ["tumour"]
    assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == "108369006"  # Neoplasm
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == sources[0].SeriesInstanceUID
    referenced = {
        i.ReferencedSOPInstanceUID for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    }
    assert referenced == {s.SOPInstanceUID for s in sources}
    assert int(seg.NumberOfFrames) == len(sources) == 16
    positions = {
        item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID: [
            float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient
        ]
        for item in seg.PerFrameFunctionalGroupsSequence
    }
    for src in sources:
        # phantom geometry: file k is slice k; NIfTI voxel (i, j, k) is column i, row j of slice k
        k = int(src.InstanceNumber) - 1
        np.testing.assert_array_equal(frames["tumour"][src.SOPInstanceUID], mask[:, :, k].T > 0)
        assert positions[src.SOPInstanceUID] == pytest.approx([float(v) for v in src.ImagePositionPatient])


def test_mri_bad_cases_are_reported(mri_run: dict, tmp_path: Path) -> None:
    data = tmp_path / "cases"
    data.mkdir()
    images = mri_run["data"] / "imagesTr"
    for c in (0, 1):
        shutil.copy(images / f"breast_0001_000{c}.nii.gz", data / f"good_000{c}.nii.gz")
    shutil.copy(images / "breast_0002_0000.nii.gz", data / "lonely_0000.nii.gz")
    shutil.copy(mri_run["data"] / "labelsTr" / "breast_0002.nii.gz", data / "onechannel.nii.gz")
    out = tmp_path / "pred"
    status = main([
        "predict", "--bundle", "breast_mri_seg_3d", "--weights", str(mri_run["weights"]), "--input", str(data),
        "--output", str(out), "--device", "cpu", "--no-progress", *set_flags(OVERRIDES["breast_mri_seg_3d"]),
    ])  # fmt: skip
    assert status == 1
    rows = {r["case"]: r for r in read_csv(out / "predictions.csv")}
    assert rows["good"]["status"] == "ok" and (out / "good_seg.nii.gz").is_file()
    assert "lonely_0001" in rows["lonely"]["error"] and "missing" in rows["lonely"]["error"]
    assert "has 1 channel(s); the bundle needs 2" in rows["onechannel"]["error"]
    assert not (out / "onechannel_seg.nii.gz").exists() and not (out / "lonely.json").exists()
