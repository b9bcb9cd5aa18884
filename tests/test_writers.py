"""sum_monai.io.writers: atomic, byte-reproducible PNG / NIfTI / DICOM writers with clear errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from sum_monai.errors import DataError
from sum_monai.io.writers import save_dicom, save_nifti, save_png


def test_save_png_gray_rgb_and_16bit(tmp_path: Path) -> None:
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    with Image.open(save_png(tmp_path / "g.png", gray)) as im:
        assert im.mode == "L" and im.size == (4, 3)
        assert np.array_equal(np.asarray(im), gray)
    rgb = np.stack([gray] * 3, axis=-1)
    with Image.open(save_png(tmp_path / "c.png", rgb)) as im:
        assert im.mode == "RGB" and np.array_equal(np.asarray(im)[..., 1], gray)
    deep = (np.arange(12, dtype=np.uint16) * 5000).reshape(3, 4)
    with Image.open(save_png(tmp_path / "d.png", deep)) as im:
        assert np.array_equal(np.asarray(im).astype(np.uint16), deep)
    # nothing but the three files: no temporary leftovers
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "d.png", "g.png"]


def test_save_png_rejects_float_without_writing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"bad\.png: cannot write a float64"):
        save_png(tmp_path / "bad.png", np.zeros((4, 4)))
    assert list(tmp_path.iterdir()) == []


def test_save_nifti_is_byte_identical_and_keeps_geometry(tmp_path: Path) -> None:
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    affine = np.diag([-0.8, -0.8, 2.0, 1.0])
    affine[:3, 3] = [10.0, 20.0, -5.0]
    a = save_nifti(tmp_path / "a.nii.gz", data, affine)
    b = save_nifti(tmp_path / "sub" / "b.nii.gz", data, affine)
    assert a.read_bytes() == b.read_bytes()  # no time stamp, no file name in the gzip header
    assert gzip.decompress(a.read_bytes())[:4] == (348).to_bytes(4, "little")
    img = nib.load(a)
    assert np.array_equal(np.asarray(img.dataobj), data) and img.get_data_dtype() == np.int16
    assert np.allclose(img.affine, affine) and int(img.header["qform_code"]) == 1
    assert np.allclose(img.header.get_zooms(), (0.8, 0.8, 2.0))


def test_save_nifti_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"must end in \.nii or \.nii\.gz"):
        save_nifti(tmp_path / "a.nrrd", np.zeros((2, 2, 2)), np.eye(4))
    with pytest.raises(DataError, match="invertible 4x4"):
        save_nifti(tmp_path / "a.nii", np.zeros((2, 2, 2)), np.zeros((4, 4)))
    assert list(tmp_path.iterdir()) == []


def test_save_dicom_adds_file_meta_and_preamble(tmp_path: Path) -> None:
    from pydicom.dataset import Dataset
    from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid(entropy_srcs=["test"])
    ds.PatientID = "X"
    path = save_dicom(tmp_path / "x.dcm", ds)
    raw = path.read_bytes()
    assert raw[128:132] == b"DICM"
    back = pydicom.dcmread(path)
    assert back.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    with pytest.raises(DataError, match="without SOPClassUID"):
        save_dicom(tmp_path / "y.dcm", Dataset())
