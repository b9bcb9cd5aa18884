"""Datalists: layouts found, leakage-free seeded splits, near-duplicates, ids, validation, CLI.

The ``make_*`` builders write tiny datasets in each layout; test_bad_input.py reuses them.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from monai.data import load_decathlon_datalist
from test_io_read import write_dicom_mg, write_dicom_series, write_nifti, write_png

from sum_monai.cli import main
from sum_monai.datalists import ids
from sum_monai.datalists.build import build_datalist
from sum_monai.datalists.near_dups import DEFAULT_THRESHOLD, hash_files, near_duplicate_groups
from sum_monai.datalists.split import assign_splits
from sum_monai.datalists.validate import validate_datalist

SPLITS = ("training", "validation", "test")
#: options of the paired layout for make_paired datasets (and the DDSM tissue set)
PAIRED = {"label_suffix": "_LI", "label_values": (64, 128, 192, 255)}


# ---------------------------------------------------------------- builders
def _texture(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """A random blocky texture: distinct images get distinct perceptual hashes."""
    coarse = rng.integers(0, 256, size=(rows // 4 + 1, cols // 4 + 1)).astype(np.uint8)
    return np.kron(coarse, np.ones((4, 4), dtype=np.uint8))[:rows, :cols]


def make_busi(
    root: Path, counts: dict[str, int] | None = None, rows: int = 32, cols: int = 40, seed: int = 0
) -> Path:
    """BUSI layout: RGB images, 1-bit masks with a square lesion, all-zero RGB masks for normal."""
    rng = np.random.default_rng(seed)
    for cls, n in (counts or {"benign": 4, "malignant": 3, "normal": 3}).items():
        for i in range(1, n + 1):
            grey = _texture(rng, rows, cols)
            write_png(root / cls / f"{cls} ({i}).png", np.stack([grey] * 3, axis=-1))
            if cls == "normal":
                write_png(root / cls / f"{cls} ({i})_mask.png", np.zeros((rows, cols, 3), dtype=np.uint8))
            else:
                mask = np.zeros((rows, cols), dtype=np.uint8)
                mask[4 : 4 + i + 3, 5 : 5 + i + 4] = 255
                write_png(root / cls / f"{cls} ({i})_mask.png", mask, mode="1")
    return root


def make_paired(root: Path, classes: dict[str, int], rows: int = 24, cols: int = 20, seed: int = 0) -> Path:
    """Paired layout (DDSM-like names '<class>_<patient>_<k>.RIGHT_MLO'), 4-value label maps."""
    rng = np.random.default_rng(seed)
    for cls, n in classes.items():
        for i in range(n):
            patient, view = i // 2, i % 2
            name = f"{cls}_{patient:04d}_{view}.RIGHT_MLO"
            write_png(root / "images" / f"{name}.png", _texture(rng, rows, cols))
            label = np.full((rows, cols), 64, dtype=np.uint8)
            label[: rows // 2] = 128
            label[: rows // 4, : cols // 4] = 255
            label[rows // 2 :, cols // 2 :] = 192
            write_png(root / "labels" / f"{name}_LI.png", label)
    return root


def make_mammo(root: Path, rows_spec: list[tuple[str, str, str]], size: tuple[int, int] = (24, 16)) -> Path:
    """Mammo layout: DICOM MG images + binary PNG masks + cases.csv.

    Args:
        rows_spec: per image (csv patient_id, DICOM PatientID tag, pathology).
    """
    rng = np.random.default_rng(0)
    lines = ["image,mask,patient_id,laterality,view,pathology"]
    for i, (csv_pid, tag_pid, pathology) in enumerate(rows_spec):
        pixels = rng.integers(0, 4000, size=size).astype(np.uint16)
        write_dicom_mg(root / "images" / f"img{i:03d}.dcm", pixels, patient_id=tag_pid)
        mask = np.zeros(size, dtype=np.uint8)
        if pathology != "normal":
            mask[3:8, 4:9] = 255
        write_png(root / "masks" / f"img{i:03d}.png", mask)
        lines.append(f"images/img{i:03d}.dcm,masks/img{i:03d}.png,{csv_pid},L,CC,{pathology}")
    (root / "cases.csv").write_text("\n".join(lines) + "\n")
    return root


def make_msd(root: Path, n: int = 4, variant: str = "per_channel", shape=(12, 10, 6), seed: int = 0) -> Path:
    """Decathlon layout with 2 DCE channels: 'per_channel' NIfTI, '4d' NIfTI or 'dicom' series."""
    rng = np.random.default_rng(seed)
    channels = {"0": "pre", "1": "post1"}
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    spec = {
        "name": "tiny",
        "channel_names": channels,
        "labels": {"background": 0, "tumour": 1},
        "numTraining": n,
    }
    if variant != "dicom":
        spec["file_ending"] = ".nii.gz"
    (root / "dataset.json").write_text(json.dumps(spec))
    for i in range(n):
        case = f"case_{i:03d}"
        pre = rng.random(shape).astype(np.float32) * 100
        post = pre * 1.5
        label = np.zeros(shape, dtype=np.uint8)
        label[3:6, 3:6, 2:4] = 1
        if variant == "per_channel":
            write_nifti(root / "imagesTr" / f"{case}_0000.nii.gz", pre)
            write_nifti(root / "imagesTr" / f"{case}_0001.nii.gz", post)
            write_nifti(root / "labelsTr" / f"{case}.nii.gz", label)
        elif variant == "4d":
            write_nifti(root / "imagesTr" / f"{case}.nii.gz", np.stack([pre, post], axis=-1))
            write_nifti(root / "labelsTr" / f"{case}.nii.gz", label)
        else:
            from sum_monai.io.read import read_image

            for name, vol in (("pre", pre), ("post1", post)):
                # (x, y, z) -> DICOM (slices, rows, cols)
                write_dicom_series(root / "dicom" / case / name, vol.transpose(2, 1, 0).astype(np.uint16))
            affine = read_image(root / "dicom" / case / "pre").affine
            import nibabel as nib

            nib.save(nib.Nifti1Image(label, affine), root / "labelsTr" / f"{case}.nii.gz")
    return root


def _all(datalist: dict) -> list[dict]:
    return [e for s in SPLITS for e in datalist[s]]


# ---------------------------------------------------------------- ids
def test_case_id_is_keyed_hash_without_trace_of_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ids.SALT_ENV, raising=False)
    name = "malignant/Smith_John_1961 (12).png"
    cid = ids.case_id(name)
    assert re.fullmatch(r"case-[0-9a-f]{12}", cid)
    assert cid == ids.case_id(name)  # deterministic
    assert ids.case_id(name) != ids.case_id("malignant/Smith_John_1961 (13).png")
    for token in ("malignant", "smith", "john", "1961", "png", "mal", "(12)"):
        assert token not in cid.lower()
    assert ids.salt_source() == "file"
    monkeypatch.setenv(ids.SALT_ENV, "site-secret")
    assert ids.salt_source() == "env"
    assert ids.case_id(name) != cid  # the salt keys the hash
    assert ids.patient_group_id("P_00173").startswith("grp-")
    assert "00173" not in ids.patient_group_id("P_00173")


# ---------------------------------------------------------------- BUSI
def test_busi_fixtures_masks_found_and_validated(busi_fixtures: Path, tmp_path: Path) -> None:
    out = tmp_path / "dl.json"
    dl = build_datalist("busi", busi_fixtures, out, val_frac=0.2, test_frac=0.2, progress=False)
    cases = {Path(e["image"]).name: e for e in _all(dl)}
    assert len(cases) == 6
    masks = {k: [Path(m).name for m in v["label"]] for k, v in cases.items()}
    assert masks["benign (195).png"] == [
        "benign (195)_mask.png",
        "benign (195)_mask_1.png",
        "benign (195)_mask_2.png",
    ]
    assert masks["benign (4).png"] == ["benign (4)_mask.png", "benign (4)_mask_1.png"]  # RGBA second mask
    assert masks["malignant (53).png"] == ["malignant (53)_mask.png", "malignant (53)_mask_1.png"]
    assert masks["normal (1).png"] == ["normal (1)_mask.png"]
    assert {k: v["class"] for k, v in cases.items()}["normal (1).png"] == "normal"
    assert sorted(v["lesion_class"] for v in cases.values()) == [0, 1, 1, 1, 2, 2]
    # 1-bit masks give {0, 1}, the RGBA mask {0, 255}, the RGB normal mask {0}
    report = validate_datalist(out, progress=False)
    assert report.label_values == [0.0, 1.0, 255.0]
    assert report.files == 6 + 10  # images + masks
    # MONAI reads it with base_dir = the JSON's folder
    loaded = load_decathlon_datalist(out, data_list_key="training", base_dir=out.parent)
    assert loaded and all(Path(e["image"]).is_file() for e in loaded)
    assert all(Path(m).is_file() for e in loaded for m in e["label"])
    assert (
        dl["meta"]["counts"]["training"]["total"]
        + dl["meta"]["counts"]["test"]["total"]
        + dl["meta"]["counts"]["validation"]["total"]
        == 6
    )


def test_busi_paths_relative_to_json_and_ids_anonymous(tmp_path: Path) -> None:
    root = make_busi(tmp_path / "data" / "busi")
    out = tmp_path / "lists" / "busi.json"
    dl = build_datalist("busi", root, out, progress=False)
    text = out.read_text()
    for entry in _all(dl):
        assert not Path(entry["image"]).is_absolute()
        assert entry["image"].startswith("../data/busi/")
        assert (out.parent / entry["image"]).is_file()
        assert re.fullmatch(r"case-[0-9a-f]{12}", entry["case_id"])
        assert re.fullmatch(r"grp-[0-9a-f]{12}", entry["group"])
    meta_text = json.dumps(dl["meta"])
    assert "benign (" not in meta_text and ".png" not in meta_text  # meta names no file
    assert dl["meta"]["root"] == "../data/busi"
    assert text.endswith("\n")


def test_seed_determinism_byte_identical(tmp_path: Path) -> None:
    root = make_busi(tmp_path / "busi", {"benign": 10, "malignant": 8, "normal": 6})
    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    build_datalist("busi", root, a, seed=3, progress=False)
    build_datalist("busi", root, b, seed=3, progress=False)
    build_datalist("busi", root, c, seed=4, progress=False)
    assert a.read_bytes() == b.read_bytes()
    split = lambda p: {e["case_id"]: s for s in SPLITS for e in json.loads(p.read_text())[s]}  # noqa: E731
    assert split(a) != split(c)  # another seed, another split


def test_split_does_not_depend_on_id_salt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_paired(tmp_path / "p", {"A": 12, "B": 12})
    monkeypatch.delenv(ids.SALT_ENV, raising=False)
    one = build_datalist("paired", root, tmp_path / "1.json", **PAIRED, progress=False)
    monkeypatch.setenv(ids.SALT_ENV, "another")
    two = build_datalist("paired", root, tmp_path / "2.json", **PAIRED, progress=False)
    for split in SPLITS:
        assert [e["image"] for e in one[split]] == [e["image"] for e in two[split]]
    assert one["training"][0]["case_id"] != two["training"][0]["case_id"]
    assert two["meta"]["case_id"]["salt"] == "env"


def test_fractions_and_zero_fraction(tmp_path: Path) -> None:
    root = make_paired(tmp_path / "p", {"A": 40})  # 40 images, one per group
    dl = build_datalist("paired", root, tmp_path / "a.json", **PAIRED, progress=False)
    assert [len(dl[s]) for s in SPLITS] == [28, 6, 6]  # 0.7 / 0.15 / 0.15 in 5% steps
    dl = build_datalist(
        "paired",
        root,
        tmp_path / "b.json",
        val_frac=0.0,
        test_frac=0.25,
        **PAIRED,
        progress=False,
    )
    assert [len(dl[s]) for s in SPLITS] == [30, 0, 10]
    assert dl["meta"]["fractions"] == {"training": 0.75, "validation": 0.0, "test": 0.25}
    assert load_decathlon_datalist(tmp_path / "b.json", data_list_key="validation") == []


def test_stratification_keeps_class_mix(tmp_path: Path) -> None:
    root = make_paired(tmp_path / "p", {"A": 40, "B": 20, "C": 20, "D": 20})
    dl = build_datalist(
        "paired",
        root,
        tmp_path / "d.json",
        class_regex="^([A-D])",
        **PAIRED,
        progress=False,
    )
    counts = dl["meta"]["counts"]
    for split, total in (("training", 70), ("validation", 15), ("test", 15)):
        assert abs(counts[split]["total"] - total) <= 2
        expected = {"A": 0.4, "B": 0.2, "C": 0.2, "D": 0.2}
        for cls, frac in expected.items():
            assert abs(counts[split][cls] - frac * counts[split]["total"]) <= 2, (split, cls, counts[split])


def test_patient_groups_never_straddle_splits_over_seeds(tmp_path: Path) -> None:
    # group regex: the DDSM-style patient part of the name (two views per patient)
    root = make_paired(tmp_path / "p", {"A": 16, "B": 12, "C": 12})
    for seed in range(8):
        dl = build_datalist(
            "paired",
            root,
            tmp_path / f"{seed}.json",
            seed=seed,
            class_regex="^([A-D])",
            group_regex=r"^[A-D]_\d+",
            **PAIRED,
            validate=seed == 0,
            progress=False,
        )
        where: dict[str, set[str]] = {}
        patient_of = {}
        for split in SPLITS:
            for e in dl[split]:
                where.setdefault(e["group"], set()).add(split)
                patient_of[e["image"]] = e["group"]
        assert all(len(s) == 1 for s in where.values()), seed
        assert len(where) == 20  # 40 images of 20 patients
        # both views of a patient share the group
        for img, grp in patient_of.items():
            twin = (
                img.replace("_0.RIGHT", "_1.RIGHT")
                if "_0.RIGHT" in img
                else img.replace("_1.RIGHT", "_0.RIGHT")
            )
            assert patient_of[twin] == grp


def test_assign_splits_property_random_groups() -> None:
    rng = np.random.default_rng(7)
    for seed in range(10):
        n = int(rng.integers(30, 120))
        groups = [f"g{int(g)}" for g in rng.integers(0, n // 2, size=n)]
        classes = [str(c) for c in rng.choice(list("xyz"), size=n)]
        splits = assign_splits(classes, groups, 0.15, 0.15, seed)
        by_group: dict[str, set[str]] = {}
        for g, s in zip(groups, splits, strict=True):
            by_group.setdefault(g, set()).add(s)
        assert all(len(v) == 1 for v in by_group.values())
        assert set(splits) == set(SPLITS)
        assert splits == assign_splits(classes, groups, 0.15, 0.15, seed)


# ---------------------------------------------------------------- near-duplicates on the real pool
@pytest.fixture(scope="module")
def pool_hashes(busi_pool: Path) -> tuple[list[Path], np.ndarray]:
    paths = sorted(p for p in busi_pool.glob("*/*.png") if "_mask" not in p.name)
    return paths, hash_files(paths, progress=False)


def test_near_duplicates_found_in_busi_pool(pool_hashes: tuple[list[Path], np.ndarray]) -> None:
    paths, hashes = pool_hashes
    assert len(paths) == 575
    groups = near_duplicate_groups(hashes, DEFAULT_THRESHOLD)
    n_images = sum(len(g) for g in groups)
    assert 95 <= len(groups) <= 120  # measured: 107 groups
    assert 200 <= n_images <= 280  # measured: 240 images
    assert max(len(g) for g in groups) <= 8  # no chaining into big clusters
    group_of = {paths[i].stem: k for k, g in enumerate(groups) for i in g}
    known = [  # pairs found by looking (same image, re-annotated copy or neighbouring frame)
        ("benign (269)", "normal (1)"),  # the same image filed under two classes
        ("benign (437)", "normal (34)"),
        ("benign (10)", "benign (327)"),
        ("benign (333)", "malignant (78)"),
        ("malignant (77)", "malignant (78)"),
        ("malignant (114)", "malignant (14)"),
        ("malignant (114)", "malignant (123)"),
        ("malignant (85)", "malignant (86)"),
        ("benign (399)", "malignant (93)"),
    ]
    for a, b in known:
        assert a in group_of and group_of.get(a) == group_of.get(b), (a, b)
    unrelated = [("benign (12)", "benign (51)"), ("benign (247)", "normal (102)")]
    for a, b in unrelated:
        assert group_of.get(a, -1) != group_of.get(b, -2), (a, b)


def test_busi_pool_split_keeps_near_duplicates_together(
    busi_pool: Path, pool_hashes: tuple[list[Path], np.ndarray], tmp_path: Path
) -> None:
    # hashes are cached in-process by the fixture, so each build only splits
    for seed in (0, 1, 2):
        dl = build_datalist(
            "busi", busi_pool, tmp_path / f"{seed}.json", seed=seed, validate=False, progress=False
        )
        near = dl["meta"]["near_duplicates"]
        assert near["checked"] and near["n_groups"] == len(near["groups"])
        split_of = {e["case_id"]: s for s in SPLITS for e in dl[s]}
        for members in near["groups"]:
            assert len({split_of[c] for c in members}) == 1
        classes = Counter(e["class"] for e in _all(dl))
        assert classes == {"benign": 322, "malignant": 157, "normal": 96}
        for split in SPLITS:
            n = len(dl[split])
            per = Counter(e["class"] for e in dl[split])
            for cls, total in classes.items():
                assert abs(per[cls] / n - total / 575) < 0.04, (seed, split, cls)
        assert 0.12 < len(dl["test"]) / 575 < 0.18


# ---------------------------------------------------------------- other layouts
def test_paired_ddsm_tissue_real(ddsm_tissue: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddsm.json"
    dl = build_datalist(
        "paired",
        ddsm_tissue,
        out,
        class_regex="^([A-D])",
        **PAIRED,
        progress=False,
    )
    entries = _all(dl)
    assert len(entries) == 60
    for e in entries:
        assert Path(e["label"]).name == Path(e["image"]).name.replace(".png", "_LI.png")
        assert e["class"] == Path(e["image"]).name[0]
    assert dl["meta"]["labels"] == {"kind": "values", "values": [64, 128, 192, 255]}
    assert validate_datalist(out, progress=False).label_values == [64.0, 128.0, 192.0, 255.0]


def test_mammo_groups_by_patient_from_csv_or_dicom_tag(tmp_path: Path) -> None:
    rows = [
        ("p1", "", "benign"),
        ("p1", "", "normal"),
        ("", "TAG-77", "malignant"),  # empty CSV id: the DICOM PatientID joins these two
        ("", "TAG-77", "normal"),
        ("p2", "", "normal"),
        ("p3", "", "benign"),
        ("p4", "", "malignant"),
        ("p5", "", "normal"),
    ]
    root = make_mammo(tmp_path / "mammo", rows)
    out = tmp_path / "mammo.json"
    dl = build_datalist("mammo", root, out, val_frac=0.2, test_frac=0.2, progress=False)
    by_image = {Path(e["image"]).name: e for e in _all(dl)}
    assert by_image["img000.dcm"]["group"] == by_image["img001.dcm"]["group"]
    assert by_image["img002.dcm"]["group"] == by_image["img003.dcm"]["group"]
    assert by_image["img000.dcm"]["group"] != by_image["img002.dcm"]["group"]
    assert [by_image[f"img{i:03d}.dcm"]["lesion_class"] for i in range(8)] == [1, 0, 2, 0, 0, 1, 2, 0]
    assert by_image["img002.dcm"]["class"] == "malignant"
    assert by_image["img000.dcm"]["laterality"] == "L" and by_image["img000.dcm"]["view"] == "CC"
    assert Path(by_image["img000.dcm"]["label"]).name == "img000.png"
    text = out.read_text()
    assert "TAG-77" not in text and '"p1"' not in text  # patient ids only as keyed hashes
    assert dl["meta"]["groups"] == 6
    assert dl["meta"]["near_duplicates"]["checked"] is False


@pytest.mark.parametrize("variant", ["per_channel", "4d", "dicom"])
def test_msd_variants(variant: str, tmp_path: Path) -> None:
    root = make_msd(tmp_path / "mri", n=4, variant=variant)
    out = root / "datalist.json"
    dl = build_datalist("msd", root, out, val_frac=0.25, test_frac=0.25, progress=False)
    entries = _all(dl)
    assert len(entries) == 4 and [len(dl[s]) for s in SPLITS] == [2, 1, 1]
    assert dl["meta"]["channels"] == ["pre", "post1"]
    assert dl["meta"]["labels"] == {"kind": "values", "values": [0, 1]}
    for e in entries:
        case = Path(e["label"]).name.replace(".nii.gz", "")
        assert e["label"] == f"labelsTr/{case}.nii.gz"
        if variant == "per_channel":
            assert e["image"] == [f"imagesTr/{case}_0000.nii.gz", f"imagesTr/{case}_0001.nii.gz"]
        elif variant == "4d":
            assert e["image"] == f"imagesTr/{case}.nii.gz"
        else:
            assert e["image"] == [f"dicom/{case}/pre", f"dicom/{case}/post1"]
    loaded = load_decathlon_datalist(out, data_list_key="training")
    assert all(
        Path(p).exists()
        for e in loaded
        for p in (e["image"] if isinstance(e["image"], list) else [e["image"]])
    )


def test_real_breast_mri_as_msd_case(breast_mri: Path, tmp_path: Path) -> None:
    """The real NRRD volume as a one-channel Decathlon case (NRRD label) validates."""
    import shutil

    root = tmp_path / "mri"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for i in range(3):
        shutil.copy(breast_mri / "breast1_image.nrrd", root / "imagesTr" / f"b{i}_0000.nrrd")
        shutil.copy(breast_mri / "breast1_label.nrrd", root / "labelsTr" / f"b{i}.nrrd")
    (root / "dataset.json").write_text(
        json.dumps({"channel_names": {"0": "T1"}, "labels": {"0": "bg", "1": "lesion"}})
    )
    dl = build_datalist("msd", root, root / "dl.json", val_frac=0.0, test_frac=0.34, progress=False)
    assert [len(dl[s]) for s in SPLITS] == [2, 0, 1]
    assert validate_datalist(root / "dl.json", progress=False).label_values == [0.0, 1.0]


# ---------------------------------------------------------------- CLI
def test_cli_datalist_and_validate(
    busi_fixtures: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "dl.json"
    argv = [
        "datalist",
        "busi",
        str(busi_fixtures),
        "--out",
        str(out),
        "--val-frac",
        "0.2",
        "--test-frac",
        "0.2",
    ]
    assert main([*argv, "--no-progress", "--seed", "5"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"split\s+benign\s+malignant\s+normal\s+total", printed)
    assert re.search(r"all\s+3\s+2\s+1\s+6", printed)
    assert "near-duplicate groups: 0" in printed and str(out) in printed
    assert json.loads(out.read_text())["meta"]["seed"] == 5
    assert main(["validate", str(out), "--no-progress"]) == 0
    assert "ok: 6 cases" in capsys.readouterr().out


def test_cli_paired_options(ddsm_tissue: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ddsm.json"
    argv = ["datalist", "paired", str(ddsm_tissue), "--out", str(out), "--label-suffix", "_LI"]
    argv += [
        "--class-regex",
        "^([A-D])",
        "--label-values",
        "64,128,192,255",
        "--no-validate",
        "--no-progress",
    ]
    assert main(argv) == 0
    meta = json.loads(out.read_text())["meta"]
    assert meta["validated"] is False and meta["classes"] == ["A", "B", "D"]
    assert "validated: no" in capsys.readouterr().out
