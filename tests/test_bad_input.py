"""Bad input: one clear DataError naming the file and the problem, and no datalist written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from test_datalists import make_busi, make_mammo, make_msd
from test_io_read import write_dicom_series, write_nifti, write_png

from sum_monai.cli import main
from sum_monai.datalists.build import build_datalist
from sum_monai.errors import ConfigError, DataError, DataErrors
from sum_monai.io.read import read_image


def only_error(exc: pytest.ExceptionInfo) -> DataError:
    """The single DataError raised (alone or as the only member of DataErrors)."""
    err = exc.value
    if isinstance(err, DataErrors):
        assert len(err.errors) == 1, str(err)
        return err.errors[0]
    assert isinstance(err, DataError)
    return err


def assert_build_fails(layout: str, root: Path, bad: Path, phrase: str, **options) -> DataError:
    """Building fails with one DataError naming ``bad`` and ``phrase``; nothing is written."""
    out = root.parent / "out" / "datalist.json"
    with pytest.raises((DataError, DataErrors)) as exc:
        build_datalist(layout, root, out, progress=False, **options)
    err = only_error(exc)
    assert Path(err.path) == bad, str(exc.value)
    assert phrase in err.problem, err.problem
    assert str(bad) in str(exc.value)
    assert not out.exists()
    assert not out.parent.exists() or not any(out.parent.iterdir())  # no temporary file left
    return err


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# ---------------------------------------------------------------- reading
def test_read_missing_empty_unsupported(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found") as exc:
        read_image(tmp_path / "nope.png")
    assert exc.value.path == str(tmp_path / "nope.png")
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    with pytest.raises(DataError, match=r"file is empty \(0 bytes\)"):
        read_image(tmp_path / "empty.nii.gz")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"unsupported file type '\.txt'"):
        read_image(tmp_path / "notes.txt")


@pytest.mark.parametrize("keep", [0.5, 0.05])
def test_read_truncated_png(tmp_path: Path, keep: float) -> None:
    path = write_png(tmp_path / "a.png", np.random.default_rng(0).integers(0, 255, (40, 40), dtype=np.uint8))
    truncate(path, keep)
    with pytest.raises(DataError, match="corrupt or truncated") as exc:
        read_image(path)
    assert exc.value.path == str(path)


def test_read_dicom_series_folder_problems(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="empty folder: expected a DICOM series"):
        read_image(empty)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.txt").write_text("not dicom")
    with pytest.raises(DataError, match="cannot be read as a DICOM series"):
        read_image(junk)
    two = tmp_path / "two"
    vol = np.ones((3, 6, 5), dtype=np.uint16)
    write_dicom_series(two / "a", vol)
    write_dicom_series(two / "b", vol * 2, spacing=(0.5, 0.5, 1.0))
    for f in (two / "b").iterdir():
        f.rename(two / "a" / f"b_{f.name}")
    with pytest.raises(DataError, match="more than one DICOM series"):
        read_image(two / "a")


# ---------------------------------------------------------------- empty or wrong folders
@pytest.mark.parametrize(
    ("layout", "phrase", "example"),
    [
        ("busi", "expected the BUSI layout", "benign/benign (1).png"),
        ("mammo", "the mammography layout expects", "cases.csv with columns image,mask"),
        ("paired", "the paired layout expects", "images/case1.png"),
        ("msd", "the msd layout expects", "labelsTr/case_001.nii.gz"),
    ],
)
def test_empty_folder_names_expected_layout(tmp_path: Path, layout: str, phrase: str, example: str) -> None:
    root = tmp_path / "data"
    root.mkdir()
    with pytest.raises(DataError) as exc:
        build_datalist(layout, root, tmp_path / "dl.json", progress=False)
    assert phrase in exc.value.problem
    assert example in exc.value.problem and str(root) in str(exc.value)
    assert not (tmp_path / "dl.json").exists()


def test_busi_folder_without_matching_cases(tmp_path: Path) -> None:
    root = tmp_path / "busi"
    (root / "benign").mkdir(parents=True)
    (root / "benign" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="no cases found: expected the BUSI layout") as exc:
        build_datalist("busi", root, tmp_path / "dl.json", progress=False)
    assert exc.value.path == str(root)
    assert not (tmp_path / "dl.json").exists()


def test_missing_dataset_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="folder not found") as exc:
        build_datalist("busi", tmp_path / "nope", tmp_path / "dl.json", progress=False)
    assert exc.value.path == str(tmp_path / "nope")


# ---------------------------------------------------------------- BUSI
def test_busi_truncated_image(tmp_path: Path) -> None:
    root = make_busi(tmp_path / "busi")
    bad = root / "benign" / "benign (2).png"
    truncate(bad)
    assert_build_fails("busi", root, bad, "corrupt or truncated")


def test_busi_corrupt_mask(tmp_path: Path) -> None:
    root = make_busi(tmp_path / "busi")
    bad = root / "malignant" / "malignant (1)_mask.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    assert_build_fails("busi", root, bad, "corrupt or truncated")


def test_busi_mask_size_differs(tmp_path: Path) -> None:
    root = make_busi(tmp_path / "busi")
    bad = root / "benign" / "benign (1)_mask.png"
    write_png(bad, np.zeros((30, 40), dtype=np.uint8), mode="1")  # image is 32 x 40
    err = assert_build_fails("busi", root, bad, "mask size (40, 30) differs")
    assert "benign (1).png size (40, 32)" in err.problem


def test_busi_second_mask_size_differs(tmp_path: Path) -> None:
    root = make_busi(tmp_path / "busi")
    bad = write_png(root / "benign" / "benign (3)_mask_1.png", np.zeros((32, 41), dtype=np.uint8), mode="1")
    assert_build_fails("busi", root, bad, "mask size (41, 32) differs")


def test_busi_mask_unexpected_values(tmp_path: Path) -> None:
    root = make_busi(tmp_path / "busi")
    bad = root / "benign" / "benign (2)_mask.png"
    mask = np.zeros((32, 40), dtype=np.uint8)
    mask[2:6, 2:6] = 1
    mask[10:12, 10:12] = 7
    write_png(bad, mask)
    err = assert_build_fails("busi", root, bad, "unexpected mask values {0, 1, 7}")
    assert "binary mask ({0, 1} or {0, 255})" in err.problem


def test_busi_colour_mask_with_differing_channels(tmp_path: Path) -> None:
    root = make_busi(tmp_path / "busi")
    bad = root / "benign" / "benign (1)_mask.png"
    rgb = np.zeros((32, 40, 3), dtype=np.uint8)
    rgb[2:8, 2:8, 0] = 255  # red only
    write_png(bad, rgb)
    assert_build_fails("busi", root, bad, "R, G and B channels differ")


def test_busi_rgb_and_rgba_masks_are_accepted(tmp_path: Path) -> None:
    root = make_busi(tmp_path / "busi")
    grey = np.zeros((32, 40), dtype=np.uint8)
    grey[3:9, 3:9] = 255
    write_png(root / "benign" / "benign (1)_mask.png", np.stack([grey] * 3, axis=-1))
    write_png(
        root / "benign" / "benign (1)_mask_1.png", np.stack([grey] * 3 + [np.full_like(grey, 255)], axis=-1)
    )
    dl = build_datalist("busi", root, tmp_path / "ok.json", progress=False)
    assert dl["meta"]["validated"] and (tmp_path / "ok.json").is_file()


def test_busi_normal_case_with_lesion_pixels(tmp_path: Path) -> None:
    root = make_busi(tmp_path / "busi")
    bad = root / "normal" / "normal (2)_mask.png"
    mask = np.zeros((32, 40), dtype=np.uint8)
    mask[5:10, 5:10] = 255
    write_png(bad, mask)
    assert_build_fails("busi", root, bad, "class is normal but the mask marks 25 pixels")


def test_busi_lesion_case_with_empty_masks(tmp_path: Path) -> None:
    root = make_busi(tmp_path / "busi")
    bad = root / "malignant" / "malignant (2)_mask.png"
    write_png(bad, np.zeros((32, 40), dtype=np.uint8), mode="1")
    assert_build_fails("busi", root, bad, "class is malignant but its mask(s) are empty")


def test_busi_image_without_mask_and_orphan_mask(tmp_path: Path) -> None:
    root = make_busi(tmp_path / "busi")
    (root / "benign" / "benign (4)_mask.png").unlink()
    assert_build_fails("busi", root, root / "benign" / "benign (4).png", "no mask")
    root2 = make_busi(tmp_path / "busi2")
    (root2 / "normal" / "normal (3).png").unlink()
    assert_build_fails("busi", root2, root2 / "normal" / "normal (3)_mask.png", "mask without an image")


def test_all_problems_are_collected(tmp_path: Path) -> None:
    root = make_busi(tmp_path / "busi")
    truncate(root / "benign" / "benign (2).png")
    write_png(root / "malignant" / "malignant (3)_mask.png", np.zeros((5, 5), dtype=np.uint8), mode="1")
    out = tmp_path / "dl.json"
    with pytest.raises(DataErrors) as exc:
        build_datalist("busi", root, out, progress=False)
    assert [Path(e.path).name for e in exc.value.errors] == ["benign (2).png", "malignant (3)_mask.png"]
    assert str(exc.value).startswith("2 problem(s) found")
    assert not out.exists()


def test_failed_rebuild_keeps_the_previous_datalist(tmp_path: Path) -> None:
    root = make_busi(tmp_path / "busi")
    out = tmp_path / "dl.json"
    build_datalist("busi", root, out, progress=False)
    before = out.read_bytes()
    truncate(root / "benign" / "benign (1).png")
    with pytest.raises(DataErrors):
        build_datalist("busi", root, out, seed=9, progress=False)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busi", "dl.json"]


def test_no_validate_skips_opening_files(tmp_path: Path) -> None:
    root = make_busi(tmp_path / "busi")
    truncate(root / "benign" / "benign (1)_mask.png")
    dl = build_datalist("busi", root, tmp_path / "dl.json", validate=False, progress=False)
    assert dl["meta"]["validated"] is False
    with pytest.raises(DataErrors, match="corrupt or truncated"):  # `sum-monai validate` still catches it
        from sum_monai.datalists.validate import validate_datalist

        validate_datalist(tmp_path / "dl.json", progress=False)


# ---------------------------------------------------------------- mammography
MAMMO_ROWS = [("p1", "", "benign"), ("p2", "", "normal"), ("p3", "", "malignant"), ("p4", "", "normal")]


def test_mammo_truncated_dicom(tmp_path: Path) -> None:
    root = make_mammo(tmp_path / "mammo", MAMMO_ROWS)
    bad = root / "images" / "img001.dcm"
    truncate(bad, 0.7)
    assert_build_fails("mammo", root, bad, "corrupt or truncated", val_frac=0.25, test_frac=0.25)


def test_mammo_dicom_without_pixel_data(tmp_path: Path) -> None:
    root = make_mammo(tmp_path / "mammo", MAMMO_ROWS)
    bad = root / "images" / "img002.dcm"
    ds = pydicom.dcmread(bad)
    del ds.PixelData
    ds.save_as(bad)
    assert_build_fails("mammo", root, bad, "no pixel data", val_frac=0.25, test_frac=0.25)


def test_mammo_unreadable_header_when_patient_id_needed(tmp_path: Path) -> None:
    root = make_mammo(tmp_path / "mammo", [("", "T1", "benign"), ("p2", "", "normal")])
    bad = root / "images" / "img000.dcm"
    bad.write_bytes(b"not a dicom file at all" * 10)
    assert_build_fails("mammo", root, bad, "cannot read the DICOM header", val_frac=0.0, test_frac=0.0)


def test_mammo_mask_size_differs_from_dicom(tmp_path: Path) -> None:
    root = make_mammo(tmp_path / "mammo", MAMMO_ROWS)
    bad = write_png(root / "masks" / "img000.png", np.zeros((24, 17), dtype=np.uint8))
    assert_build_fails("mammo", root, bad, "mask size (17, 24) differs", val_frac=0.25, test_frac=0.25)


def test_mammo_csv_problems(tmp_path: Path) -> None:
    root = make_mammo(tmp_path / "mammo", MAMMO_ROWS)
    table = root / "cases.csv"
    lines = table.read_text().splitlines()
    table.write_text("\n".join([lines[0], lines[1].replace("benign", "suspicious"), *lines[2:]]) + "\n")
    assert_build_fails(
        "mammo", root, table, "line 2: pathology 'suspicious' is not normal, benign or malignant"
    )
    table.write_text("image,mask,pathology\nimages/img000.dcm,masks/img000.png,benign\n")
    assert_build_fails("mammo", root, table, "missing column(s) patient_id, laterality, view")


# ---------------------------------------------------------------- MRI (Decathlon)
def test_msd_truncated_nifti(tmp_path: Path) -> None:
    root = make_msd(tmp_path / "mri")
    bad = root / "imagesTr" / "case_002_0001.nii.gz"
    truncate(bad)
    assert_build_fails("msd", root, bad, "corrupt or truncated")


def test_msd_nan_volume(tmp_path: Path) -> None:
    root = make_msd(tmp_path / "mri")
    bad = root / "imagesTr" / "case_001_0000.nii.gz"
    vol = np.ones((12, 10, 6), dtype=np.float32)
    vol[2, 3, 4] = np.nan
    vol[5, 5, 5] = np.inf
    write_nifti(bad, vol)
    assert_build_fails("msd", root, bad, "holds 1 NaN and 1 infinite values")


@pytest.mark.parametrize(
    ("change", "phrase"),
    [
        ({"spacing": (0.9, 0.8, 2.0)}, "channel 2 spacing 0.9x0.8x2 mm differs"),
        ({"origin": (0.0, 0.0, 5.0)}, "channel 2 orientation or origin (affine) differs"),
        ({"shape": (12, 10, 7)}, "channel 2 size (12, 10, 7) differs"),
    ],
)
def test_msd_dce_channel_geometry_mismatch(tmp_path: Path, change: dict, phrase: str) -> None:
    root = make_msd(tmp_path / "mri")
    bad = root / "imagesTr" / "case_003_0001.nii.gz"
    shape = change.get("shape", (12, 10, 6))
    write_nifti(
        bad,
        np.ones(shape, dtype=np.float32),
        spacing=change.get("spacing", (0.8, 0.8, 2.0)),
        origin=change.get("origin", (0, 0, 0)),
    )
    err = assert_build_fails("msd", root, bad, phrase)
    assert "case_003_0000.nii.gz" in err.problem  # says which channel it was compared with


def test_msd_label_geometry_and_values(tmp_path: Path) -> None:
    root = make_msd(tmp_path / "mri")
    bad = root / "labelsTr" / "case_000.nii.gz"
    write_nifti(bad, np.zeros((12, 10, 6), dtype=np.uint8), origin=(1.0, 0, 0))
    assert_build_fails("msd", root, bad, "mask orientation or origin (affine) differs")
    label = np.zeros((12, 10, 6), dtype=np.uint8)
    label[1:3, 1:3, 1:3] = 2  # not declared in dataset.json
    write_nifti(bad, label)
    assert_build_fails(
        "msd", root, bad, "unexpected mask values {0, 2}: expected the declared label values {0, 1}"
    )


def test_msd_4d_with_wrong_channel_count(tmp_path: Path) -> None:
    root = make_msd(tmp_path / "mri", variant="4d")
    bad = root / "imagesTr" / "case_001.nii.gz"
    write_nifti(bad, np.ones((12, 10, 6, 3), dtype=np.float32))
    assert_build_fails("msd", root, bad, "holds 3 channel(s) but the datalist names 2")


def test_msd_missing_channel_file(tmp_path: Path) -> None:
    root = make_msd(tmp_path / "mri")
    bad = root / "imagesTr" / "case_002_0001.nii.gz"
    bad.unlink()
    assert_build_fails("msd", root, bad, "channel of case missing")


def test_msd_dicom_channel_geometry_mismatch(tmp_path: Path) -> None:
    root = make_msd(tmp_path / "mri", variant="dicom")
    bad = root / "dicom" / "case_001" / "post1"
    for f in bad.iterdir():
        f.unlink()
    write_dicom_series(bad, np.ones((6, 10, 12), dtype=np.uint16), spacing=(0.8, 0.8, 3.0))
    assert_build_fails("msd", root, bad, "channel 2 spacing 0.8x0.8x3 mm differs")


def test_msd_dicom_empty_channel_folder(tmp_path: Path) -> None:
    root = make_msd(tmp_path / "mri", variant="dicom")
    bad = root / "dicom" / "case_002" / "pre"
    for f in bad.iterdir():
        f.unlink()
    assert_build_fails("msd", root, bad, "empty folder: expected a DICOM series")


def test_near_duplicates_refuse_3d_images(tmp_path: Path) -> None:
    root = make_msd(tmp_path / "mri", variant="4d")
    bad = root / "imagesTr" / "case_000.nii.gz"
    assert_build_fails("msd", root, bad, "near-duplicate detection works on 2D images", near_dups=True)


def test_too_few_groups_for_the_fractions(tmp_path: Path) -> None:
    root = make_msd(tmp_path / "mri", n=2)
    with pytest.raises(DataError, match="only 2 independent group") as exc:
        build_datalist("msd", root, tmp_path / "dl.json", progress=False)
    assert exc.value.path == str(root)
    with pytest.raises(ConfigError, match="below 1"):
        build_datalist("msd", root, tmp_path / "dl.json", val_frac=0.5, test_frac=0.5, progress=False)
    with pytest.raises(ConfigError, match="layout msd has no option label_suffix"):
        build_datalist("msd", root, tmp_path / "dl.json", label_suffix="_LI", progress=False)
    assert not (tmp_path / "dl.json").exists()


# ---------------------------------------------------------------- validate CLI
def test_validate_cli_reports_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_busi(tmp_path / "busi")
    out = tmp_path / "dl.json"
    build_datalist("busi", root, out, progress=False)
    (root / "normal" / "normal (1)_mask.png").unlink()
    truncate(root / "benign" / "benign (1).png")
    assert main(["validate", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "2 problem(s) found" in err
    assert f"{root / 'normal' / 'normal (1)_mask.png'}: file not found" in err
    assert f"{root / 'benign' / 'benign (1).png'}: cannot be read as a PNG image" in err


def test_validate_cli_catches_leakage_and_bad_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_busi(tmp_path / "busi")
    out = tmp_path / "dl.json"
    data = build_datalist("busi", root, out, progress=False)
    moved = data["training"][0]
    data["test"].append(dict(moved, case_id="case-000000000000"))  # same image and group in two splits
    out.write_text(json.dumps(data))
    assert main(["validate", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"group {moved['group']} appears in test and training: leakage" in err
    assert f"image {moved['image']} appears in test and training: leakage" in err
    out.write_text("{not json")
    assert main(["validate", str(out)]) == 2
    assert f"{out}: not a valid JSON datalist" in capsys.readouterr().err


def test_datalist_cli_bad_input_exits_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_busi(tmp_path / "busi")
    truncate(root / "malignant" / "malignant (2).png")
    out = tmp_path / "dl.json"
    assert main(["datalist", "busi", str(root), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "malignant (2).png: cannot be read as a PNG image (corrupt or truncated file?)" in err
    assert "Traceback" not in err
    assert not out.exists()
    with pytest.raises(SystemExit) as exc:
        main(["datalist", "busi", str(root), "--out", str(out), "--test-frac", "1.5"])
    assert exc.value.code == 2
