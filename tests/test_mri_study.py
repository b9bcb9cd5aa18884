"""DCE-MRI study folders as scanners deliver them (issue 14).

Phantom studies (``sum-monai synth --modality mri --layout study``) with 5, 3 and 2 dynamic phases,
one with every phase in a single series, one noise-free: the bundle's ``scripts/dce.py`` finds the
dynamic series and its phases from the DICOM tags, ``sum-monai predict`` runs them end to end
(chosen series named in the JSON, DICOM SEG on the pre-contrast series, kinetic maps), the
kinetic maps match the phantom's analytic enhancement, the msd datalist takes study folders, and
the classical baseline (``configs/baseline.json``) segments the phantom tumours.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch

from sum_monai.bundle.locate import Bundle
from sum_monai.bundle.scripts import import_bundle_scripts
from sum_monai.cli import main

BUNDLE = Bundle.find("breast_mri_seg_3d")
SIZE, SPACING = (48, 40, 16), (1.6, 1.6, 2.5)
#: small phantoms: 48 x 40 x 16 voxels of 1.6 x 1.6 x 2.5 mm (77 x 64 x 40 mm)
SMALL = {"size": SIZE, "spacing": SPACING, "progress": False, "overview": False}
#: tumour radius range (mm) of the noise-free phantom: an eroded core of some 40 voxels
LARGE = (7.0, 9.0)


@pytest.fixture(scope="module")
def dce():
    return import_bundle_scripts(BUNDLE.root, "dce")


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three study folders with 5, 3 and 2 dynamic phases, written through the CLI."""
    out = tmp_path_factory.mktemp("studies") / "mri"
    code = main([
        "synth", "--modality", "mri", "--layout", "study", "--n", "3", "--phases", "5", "3", "2", "--seed", "3",
        "--size", *map(str, SIZE), "--spacing", *map(str, SPACING), "--out", str(out), "--no-overview", "--no-progress",
    ])  # fmt: skip
    assert code == 0
    return out


@pytest.fixture(scope="module")
def single_series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One study whose 3 dynamic phases share one series (TemporalPositionIdentifier), noise-free."""
    from sum_monai.phantoms import generate

    out = tmp_path_factory.mktemp("single") / "mri"
    generate("mri", 1, out, seed=5, layout="study", phases=(3,), dynamic_series="single", noise=0.0,
             lesion_size=LARGE, **SMALL)  # fmt: skip
    return out


def _descriptions(selection) -> list[str]:
    return [s.description for s in selection.used]


def test_phases_are_found_from_the_tags_for_every_phase_count(studies: Path, dce) -> None:
    manifest = json.loads((studies / "phantom.json").read_text())
    for record, passes in zip(manifest["cases"], (["4th pass"], ["2nd pass"], ["1st pass"]), strict=True):
        folder = studies / record["study"]
        assert dce.is_study(folder)
        sel = dce.select_phases(folder, ("pre", "post1", "last"))
        assert _descriptions(sel) == ["ax dyn pre", "ax dyn 1st pass", f"ax dyn {passes[0]}"]
        assert len(sel.phases) == record["phases"]
        assert (sel.ordered_by, sel.contrast_from) == ("AcquisitionTime", "ContrastBolusStartTime")
        why = {s.description: s.why for s in sel.skipped}
        assert why["3-plane loc"].startswith("localiser")
        assert why["breast tissue seg"].startswith("DICOM SEG")
        assert why["ax dyn sub 1st pass"].startswith("derived image")
        assert why["sag t1 post"].startswith("other plane (sagittal")
        assert "geometry differs" in why["ax t2 stir"] and "geometry differs" in why["ax t1 tse post"]
        described = sel.describe()
        assert described["channels"]["pre"]["folder"] == "03-ax_dyn_pre"
        assert [p["time_s"] for p in described["dynamic_phases"]] == [0.0, 120.0, 210.0, 300.0, 390.0][: record["phases"]]


def test_a_study_folder_is_scanned_once_until_its_files_change(studies: Path, dce, tmp_path: Path, monkeypatch) -> None:
    """Finding the cases, picking the phases and the DICOM SEG each scanned a scanner-size study
    again (3 s per scan of 2 x 160 slices); the headers are now read once per unchanged folder."""
    folder = tmp_path / "study"
    shutil.copytree(studies / json.loads((studies / "phantom.json").read_text())["cases"][2]["study"], folder)
    reads = []
    real = pydicom.dcmread
    monkeypatch.setattr(pydicom, "dcmread", lambda *a, **k: reads.append(1) or real(*a, **k))
    first = dce.scan_study(folder)
    n = len(reads)
    assert n > 0
    first[0].why = "annotated by a caller"
    again = dce.scan_study(folder)
    assert len(reads) == n  # no header read again
    assert [s.series_uid for s in again] == [s.series_uid for s in first] and again[0].why != "annotated by a caller"
    removed = next(p for p in sorted(folder.rglob("*")) if p.is_file())
    removed.unlink()
    dce.scan_study(folder)
    assert len(reads) > n  # the folder changed: scanned again


def test_phases_in_one_series_and_flat_folders(single_series: Path, studies: Path, dce, tmp_path: Path) -> None:
    sel = dce.select_phases(single_series / "dicom" / "breast_0001", ("pre", "post1", "last"))
    assert [s.part for s in sel.used] == [1, 2, 3] and _descriptions(sel) == ["ax dyn vibrant"] * 3
    assert all(len(s.files) == SIZE[2] for s in sel.used)
    # the same study with every file side by side in one folder (as some PACS exports)
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, f in enumerate(sorted((studies / "dicom" / "breast_0002").rglob("*.dcm"))):
        shutil.copy(f, flat / f"IM{i:05d}")
    sel = dce.select_phases(flat, ("pre", "post1"))
    nested = dce.select_phases(studies / "dicom" / "breast_0002", ("pre", "post1"))
    assert [[pydicom.dcmread(f).SOPInstanceUID for f in s.files] for s in sel.used] == [
        [pydicom.dcmread(f).SOPInstanceUID for f in s.files] for s in nested.used
    ]


def _rewrite(folder: Path, change) -> None:
    for f in folder.rglob("*.dcm"):
        ds = pydicom.dcmread(f)
        if change(ds) is not False:
            ds.save_as(f)


def test_tags_win_over_descriptions_and_numbers(studies: Path, dce, tmp_path: Path) -> None:
    """Descriptions swapped and series renumbered backwards: the times still order the phases."""
    study = tmp_path / "study"
    shutil.copytree(studies / "dicom" / "breast_0002", study)
    swap = {"ax dyn pre": "ax dyn 2nd pass", "ax dyn 2nd pass": "ax dyn pre"}

    def scramble(ds: pydicom.Dataset) -> None:
        ds.SeriesDescription = swap.get(ds.SeriesDescription, ds.SeriesDescription)
        ds.SeriesNumber = 100 - int(ds.SeriesNumber)

    _rewrite(study, scramble)
    sel = dce.select_phases(study, ("pre", "post1", "last"))
    assert [s.files[0].parent.name for s in sel.used] == ["03-ax_dyn_pre", "04-ax_dyn_1st_pass", "05-ax_dyn_2nd_pass"]
    assert any("SeriesNumber order" in n for n in sel.notes)

    # no contrast tags at all: the earliest phase is pre-contrast; the swapped descriptions are noted
    def strip(ds: pydicom.Dataset) -> None:
        for keyword in ("ContrastBolusAgent", "ContrastBolusStartTime", "ContrastBolusVolume"):
            if keyword in ds:
                delattr(ds, keyword)

    _rewrite(study, strip)
    sel = dce.select_phases(study, ("pre", "post1"))
    assert sel.contrast_from == "order"
    assert [s.files[0].parent.name for s in sel.used] == ["03-ax_dyn_pre", "04-ax_dyn_1st_pass"]
    assert any("no contrast tags" in n for n in sel.notes)
    assert any("descriptions disagree" in n for n in sel.notes)


def test_a_study_without_a_pre_post_pair_is_one_clear_error(studies: Path, dce, tmp_path: Path, capsys) -> None:
    study = tmp_path / "broken"
    src = studies / "dicom" / "breast_0003"
    for name in ("01-3-plane_loc", "03-ax_dyn_pre", "08-breast_tissue_seg"):
        shutil.copytree(src / name, study / name)
    with pytest.raises(dce.StudyError) as err:
        dce.select_phases(study, ("pre", "post1"))
    message = str(err.value)
    assert message.startswith(str(study)) and "no dynamic series" in message
    for found in ("'3-plane loc'", "'ax dyn pre'", "'breast tissue seg'", "DICOM SEG", "localiser"):
        assert found in message
    # through predict: the case fails with that message, nothing else is written for it
    out = tmp_path / "pred"
    code = main(["predict", "--bundle", "breast_mri_seg_3d", "--input", str(study), "--output", str(out),
                 "--device", "cpu", "--no-progress"])  # fmt: skip
    assert code == 1
    assert "no dynamic series" in capsys.readouterr().err
    assert not (out / "broken_seg.nii.gz").exists()


def test_the_reader_stacks_the_chosen_phases(single_series: Path, dce) -> None:
    from monai.transforms import LoadImage

    study = single_series / "dicom" / "breast_0001"
    img = LoadImage(reader=dce.DCEStudyReader(("pre", "post1", "last")), image_only=True, ensure_channel_first=True)(str(study))
    assert tuple(img.shape) == (3, *SIZE)
    assert json.loads(img.meta["dce_study"])["channels"]["last"]["temporal_position"] == 3
    # an ordinary series folder is read exactly as ITKReader reads it
    from monai.data import ITKReader

    series = next(study.glob("*-ax_t2_stir"))
    a = LoadImage(reader=dce.DCEStudyReader(), image_only=True)(str(series))
    b = LoadImage(reader=ITKReader(), image_only=True)(str(series))
    assert torch.equal(a, b)


@pytest.fixture(scope="module")
def predicted(studies: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pred")
    code = main(["predict", "--bundle", "breast_mri_seg_3d", "--input", str(studies / "dicom"), "--output", str(out),
                 "--device", "cpu", "--no-progress"])  # fmt: skip
    assert code == 0
    return out


def test_study_folders_predict_end_to_end_naming_the_series(predicted: Path, studies: Path) -> None:
    import nibabel as nib

    for case, phases in (("breast_0001", 5), ("breast_0002", 3), ("breast_0003", 2)):
        record = json.loads((predicted / f"{case}.json").read_text())
        assert record["status"] == "ok"
        assert record["study"]["channels"]["pre"]["description"] == "ax dyn pre"
        assert record["study"]["channels"]["post1"]["description"] == "ax dyn 1st pass"
        assert "ContrastBolusStartTime" in record["study"]["channels"]["post1"]["why"]
        assert len(record["study"]["dynamic_phases"]) == phases
        mask = nib.load(predicted / f"{case}_seg.nii.gz")
        label = nib.load(studies / "labelsTr" / f"{case}.nii.gz")
        assert mask.shape == SIZE
        np.testing.assert_allclose(mask.affine, label.affine, atol=1e-4)
        maps = record["kinetics"]["maps"]
        assert set(maps) == ({"subtraction", "pe", "ser"} if phases >= 3 else {"subtraction", "pe"})
        for name in maps.values():
            img = nib.load(predicted / name)
            assert img.shape == SIZE and np.allclose(img.affine, mask.affine, atol=1e-4)
        tumour = record["kinetics"]["tumour"]
        if tumour["voxels"]:
            assert tumour["mean_enhancement_percent"] > 50  # the phantom tumours enhance strongly
        # the DICOM SEG refers to the pre-contrast series the bundle used
        seg = pydicom.dcmread(predicted / f"{case}_seg.dcm")
        pre = pydicom.dcmread(next((studies / "dicom" / case / "03-ax_dyn_pre").glob("*.dcm")))
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == pre.SeriesInstanceUID


def test_the_shipped_network_finds_the_phantom_tumours(predicted: Path, studies: Path) -> None:
    import nibabel as nib

    dices = []
    for case in ("breast_0001", "breast_0002", "breast_0003"):
        mask = np.asarray(nib.load(predicted / f"{case}_seg.nii.gz").dataobj) > 0
        label = np.asarray(nib.load(studies / "labelsTr" / f"{case}.nii.gz").dataobj) > 0
        dices.append(2 * (mask & label).sum() / max(1, mask.sum() + label.sum()))
    assert np.mean(dices) > 0.5, dices


def test_kinetic_maps_of_a_noise_free_phantom_match_the_analytic_enhancement(single_series: Path, dce) -> None:
    from monai.transforms import LoadImage
    from scipy import ndimage

    from sum_monai.phantoms.common import case_rng
    from sum_monai.phantoms.mri import MRIParams, render_mri_phases
    from sum_monai.phantoms.mri_study import phase_times

    kinetics = import_bundle_scripts(BUNDLE.root, "kinetics")
    phases = LoadImage(reader=dce.DCEStudyReader(("pre", "post1", "last")), image_only=True, ensure_channel_first=True)(
        str(single_series / "dicom" / "breast_0001")
    )
    maps = kinetics.kinetic_maps(phases)
    # the truth: S_k / S_pre of the renderer, before bias, blur and 12-bit rounding
    params = MRIParams(size=SIZE, spacing=SPACING, noise=0.0, lesion_size=LARGE)
    times = phase_times(3)
    _, label, truth = render_mri_phases(case_rng(5, "mri", 0), params, tuple(t - times[1] for t in times[1:]))
    core = ndimage.binary_erosion(label > 0, iterations=1)
    assert core.sum() > 30
    e1, e2 = truth["ratios"][0] - 1.0, truth["ratios"][-1] - 1.0
    pe = maps["pe"].numpy()
    np.testing.assert_allclose(np.median(pe[core]), np.median(100 * e1[core]), rtol=0.03)
    assert np.abs(pe[core] - 100 * e1[core]).mean() < 0.05 * np.abs(100 * e1[core]).mean()
    ser = maps["ser"].numpy()
    np.testing.assert_allclose(np.median(ser[core]), np.median(e1[core] / e2[core]), rtol=0.03)
    assert np.median(ser[core]) > 1.1  # the phantom tumour washes out
    sub, pre = maps["subtraction"].numpy(), phases[0].numpy()
    np.testing.assert_allclose(sub, phases[1].numpy() - pre)
    assert np.all(pe[pre < 0.05 * pre.max()] == 0)  # no enhancement in air


def test_kinetic_maps_of_known_signals() -> None:
    kinetics = import_bundle_scripts(BUNDLE.root, "kinetics")
    x = torch.zeros(3, 8, 8, 4)
    x[:, 2:6, 2:6] = torch.tensor([300.0, 900.0, 750.0])[:, None, None, None]  # pre, early, late
    x[:, 0, 0] = torch.tensor([400.0, 480.0, 560.0])[:, None]  # persistent: SER 0.5
    m = kinetics.kinetic_maps(x)
    assert float(m["subtraction"][3, 3, 0]) == 600.0
    assert float(m["pe"][3, 3, 0]) == pytest.approx(200.0)
    assert float(m["ser"][3, 3, 0]) == pytest.approx(600.0 / 450.0)
    assert float(m["ser"][0, 0, 0]) == pytest.approx(0.5) and float(m["pe"][0, 0, 0]) == pytest.approx(20.0)
    assert float(m["pe"][7, 7, 3]) == 0.0 and float(m["ser"][7, 7, 3]) == 0.0  # air
    two = kinetics.KineticMaps()(x[:2])
    assert tuple(two.shape) == (2, 8, 8, 4)  # no late phase: no SER
    d = kinetics.KineticMapsd("image")({"image": x})
    assert torch.equal(d["image_ser"][0], m["ser"])


def test_msd_datalist_takes_study_folders(studies: Path) -> None:
    from sum_monai.datalists.msd import scan_msd

    scan = scan_msd(studies)
    images = {Path(c.label).name: c.image for c in scan.cases}
    assert images["breast_0001.nii.gz"] == ["dicom/breast_0001/03-ax_dyn_pre", "dicom/breast_0001/04-ax_dyn_1st_pass"]
    assert len(images) == 3


def test_the_classical_baseline_segments_the_phantom_tumours(studies: Path, tmp_path: Path) -> None:
    import nibabel as nib

    out = tmp_path / "baseline"
    code = main(["predict", "--bundle", "breast_mri_seg_3d", "--input", str(studies / "dicom"), "--output", str(out),
                 "--config", str(BUNDLE.root / "configs" / "baseline.json"), "--device", "cpu", "--no-progress"])  # fmt: skip
    assert code == 0
    dices = []
    for case in ("breast_0001", "breast_0002", "breast_0003"):
        mask = np.asarray(nib.load(out / f"{case}_seg.nii.gz").dataobj) > 0
        label = np.asarray(nib.load(studies / "labelsTr" / f"{case}.nii.gz").dataobj) > 0
        dices.append(2 * (mask & label).sum() / max(1, mask.sum() + label.sum()))
        assert json.loads((out / f"{case}.json").read_text())["measurements"]["lesion_count"] <= 1
    assert np.mean(dices) > 0.6, dices


def _real_single_phase_case(breast_mri: Path, folder: Path) -> tuple[Path, np.ndarray]:
    """The PyRadiomics breast1 volume as a 2-channel case: a pseudo pre-contrast, then the image.

    It is one phase only, so channel 0 is the median of the image inside the body (a flat
    "pre-contrast" image): the enhancement both methods see is the image's brightness relative to
    the typical tissue. Returns the 4D NIfTI and the label on the same grid.
    """
    from monai.data import ITKReader
    from monai.transforms import LoadImage

    from sum_monai.io.writers import save_nifti

    load = LoadImage(reader=ITKReader(), image_only=True)
    image = load(str(breast_mri / "breast1_image.nrrd"))
    label = load(str(breast_mri / "breast1_label.nrrd")).numpy() > 0
    arr = image.numpy().astype(np.float32)
    body = arr > 0.1 * np.percentile(arr, 99)
    pre = np.full_like(arr, float(np.median(arr[body])))
    path = save_nifti(folder / "breast1.nii.gz", np.stack([pre, arr], axis=-1), np.asarray(image.affine))
    return path, label


def test_network_and_baseline_on_the_real_breast_volume(breast_mri: Path, tmp_path: Path) -> None:
    """The model card's real-volume row (eval_metrics pyradiomics_breast1_single_phase)."""
    import nibabel as nib

    case, label = _real_single_phase_case(breast_mri, tmp_path)
    recorded = BUNDLE.metadata["eval_metrics"]["pyradiomics_breast1_single_phase"]
    for method, extra in (("network", []), ("baseline", ["--config", str(BUNDLE.root / "configs" / "baseline.json")])):
        out = tmp_path / method
        code = main(["predict", "--bundle", "breast_mri_seg_3d", "--input", str(case), "--output", str(out),
                     "--device", "cpu", "--no-progress", *extra])  # fmt: skip
        assert code == 0
        mask = np.asarray(nib.load(out / "breast1_seg.nii.gz").dataobj) > 0
        assert mask.shape == label.shape == (45, 120, 21)
        dice = 2 * (mask & label).sum() / max(1, mask.sum() + label.sum())
        print(f"{method}: Dice {dice:.3f}, {int(mask.sum())} voxels predicted, {int(label.sum())} labelled")
        assert dice == pytest.approx(recorded[f"{method}_dice"], abs=0.005)
