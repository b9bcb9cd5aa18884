"""DICOM attributes shared by the phantom writers (patient, study, series, equipment).

Dates, times and UIDs are fixed or derived from the seed, so the same seed gives byte-identical
files. Patient names and IDs are fake but look like real ones (``PHANTOM^P0003`` / ``PH0003``),
so anonymisation code has something to remove.
"""

from __future__ import annotations

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from sum_monai import __version__

__all__ = ["STUDY_DATE", "base_dataset", "code_item"]

#: Fixed acquisition date / time of every phantom (no wall-clock time in the files).
STUDY_DATE = "20240101"
STUDY_TIME = "090000"


def code_item(value: str, scheme: str, meaning: str) -> Dataset:
    """One item of a DICOM code sequence (e.g. SNOMED CT ``76752008`` "Breast")."""
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def base_dataset(
    sop_class_uid: str,
    sop_instance_uid: str,
    *,
    modality: str,
    patient_name: str,
    patient_id: str,
    study_uid: str,
    series_uid: str,
    series_number: int,
    instance_number: int,
    series_description: str,
    study_description: str,
) -> Dataset:
    """A dataset with file meta, SOP Common, Patient, General Study / Series / Equipment / Image.

    The caller adds the modality-specific modules and the pixel data
    (``Dataset.set_pixel_data``).
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = STUDY_DATE
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = STUDY_TIME
    ds.AccessionNumber = ""
    ds.Modality = modality
    ds.Manufacturer = "sum_monai"
    ds.ManufacturerModelName = "synthetic phantom"
    ds.SoftwareVersions = __version__
    ds.InstitutionName = "PHANTOM"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = study_description
    ds.SeriesDescription = series_description
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "F"
    ds.PatientIdentityRemoved = "NO"  # fake, but shaped like real identifiers on purpose
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    return ds
