"""mini-MIAS as users download it: Info.txt quirks, circle label maps, woman-grouped folds, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sum_monai.cli import main
from sum_monai.datalists.build import build_datalist
from sum_monai.datalists.mias import circle_label, parse_info, scan_mias
from sum_monai.errors import DataError, DataErrors


def test_info_table_quirks_on_the_real_file(mias: Path) -> None:
    rows = parse_info(mias / "Info.txt")
    assert len(rows) == 246 and len({r.ref for r in rows}) == 240
    first = rows[0]
    assert (first.ref, first.tissue, first.abnormality, first.severity) == ("mdb001", "G", "CIRC", "B")
    # origin bottom-left: y = 425 on a 1024-row film is row 598
    assert first.row_col(1024) == (598, 535)
    unlocated = sorted(r.ref for r in rows if r.abnormality != "NORM" and not r.located)
    assert unlocated == ["mdb059", "mdb216", "mdb233", "mdb245"]
    assert [r.severity for r in rows if r.ref == "mdb144"] == ["B", "M"]  # one film, two severities
    assert sum(r.ref == "mdb226" for r in rows) == 3
    assert {r.tissue for r in rows} == {"F", "G", "D"}
    assert sum(r.abnormality == "NORM" for r in rows) == 153


def test_labels_follow_the_bottom_left_origin_and_the_worst_severity(mias_subset: Path, tmp_path: Path) -> None:
    scan = scan_mias(mias_subset, label_dir=tmp_path / "labels")
    by_ref = {Path(c.image).stem: c for c in scan.cases}
    assert {r: c.cls for r, c in by_ref.items()} == {
        "mdb001": "benign", "mdb002": "benign", "mdb023": "malignant", "mdb024": "normal",
        "mdb143": "normal", "mdb144": "malignant",
    }  # fmt: skip
    label = np.asarray(Image.open(by_ref["mdb144"].label))
    assert label.shape == (1024, 1024) and set(np.unique(label)) == {0, 1, 2}
    assert label[1023 - 994, 233] == 1 and label[1023 - 540, 313] == 2  # benign and malignant circles
    assert label[994, 233] == 0  # not where a top-left origin would put it
    # a disc of radius 27 around its centre, not an outline
    assert (label == 2).sum() == pytest.approx(np.pi * 27**2, rel=0.03)
    normal = np.asarray(Image.open(by_ref["mdb024"].label))
    assert not normal.any()
    # films 2k-1 and 2k are one woman
    assert by_ref["mdb143"].patient == by_ref["mdb144"].patient != by_ref["mdb023"].patient
    assert by_ref["mdb001"].extra["laterality"] == "R" and by_ref["mdb002"].extra["laterality"] == "L"
    assert by_ref["mdb143"].extra["tissue"] == "F"


def test_datalist_folds_keep_women_together_and_labels_out_of_the_dataset(mias_subset: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs" / "mias.json"
    main(["datalist", "mias", str(mias_subset), "--out", str(out), "--folds", "3", "--no-progress"])
    datalist = json.loads(out.read_text())
    cases = datalist["training"] + datalist["validation"]
    assert len(cases) == 6 and not datalist["test"]
    assert {c["fold"] for c in datalist["validation"]} == {0}
    by_group: dict[str, set[int]] = {}
    for c in cases:
        by_group.setdefault(c["group"], set()).add(c["fold"])
    assert len(by_group) == 3 and all(len(f) == 1 for f in by_group.values())
    assert sorted(datalist["meta"]["folds"]["counts"]) == ["0", "1", "2"]
    labels = sorted((out.parent / "mias_labels").glob("*.png"))
    assert len(labels) == 6 and not list(mias_subset.glob("*label*"))
    lesions = datalist["meta"]["lesions"]
    two = next(v for v in lesions.values() if len(v) == 2)
    assert {(d["row"], d["col"], d["severity"], d["group"]) for d in two} == {(29, 233, "B", "mass"), (483, 313, "M", "mass")}
    assert datalist["meta"]["labels"] == {"kind": "values", "values": [0, 1, 2]}


def _small_mias(folder: Path, rows: list[str], films: tuple[str, ...] = ("mdb001", "mdb002")) -> Path:
    folder.mkdir(parents=True)
    for ref in films:
        Image.fromarray(np.zeros((64, 64), np.uint8)).save(folder / f"{ref}.pgm")
    (folder / "Info.txt").write_text("\n".join(rows) + "\n")
    return folder


def test_bottom_left_origin_on_a_small_film(tmp_path: Path) -> None:
    folder = _small_mias(tmp_path / "m", ["mdb001 F CIRC B 10 5 2", "mdb002 F NORM"])
    scan = scan_mias(folder, label_dir=tmp_path / "labels")
    label = np.asarray(Image.open(scan.cases[0].label))
    rows, cols = np.nonzero(label)
    assert (rows.mean(), cols.mean()) == (58, 10)  # 63 - 5, 10


@pytest.mark.parametrize(
    ("rows", "films", "message"),
    [
        (["mdb001 F CIRC B 10 5 2", "mdb003 F NORM", "mdb002 F NORM"], ("mdb001", "mdb002"), "line 2: names film mdb003.pgm"),
        (["mdb001 F CIRC B 70 5 2", "mdb002 F NORM"], ("mdb001", "mdb002"), "line 1: centre (70, 5) of mdb001 lies outside the 64x64 film"),
        (["mdb001 F CIRC B 10 5", "mdb002 F NORM"], ("mdb001", "mdb002"), "line 1"),
        (["mdb001 X NORM", "mdb002 F NORM"], ("mdb001", "mdb002"), "background tissue 'X'"),
        (["mdb001 F NORM"], ("mdb001", "mdb002"), "mdb002.pgm: film has no row in Info.txt"),
    ],
)
def test_bad_tables_name_the_file_and_the_row(tmp_path: Path, rows: list[str], films: tuple[str, ...], message: str) -> None:
    folder = _small_mias(tmp_path / "m", rows, films)
    with pytest.raises((DataError, DataErrors)) as err:
        scan_mias(folder, label_dir=tmp_path / "labels")
    assert message in str(err.value)
    assert not (tmp_path / "labels").exists()  # nothing written before the table is known good


def test_labels_are_never_written_into_the_dataset(tmp_path: Path) -> None:
    folder = _small_mias(tmp_path / "m", ["mdb001 F NORM", "mdb002 F NORM"])
    with pytest.raises(DataError, match="never written into the dataset folder"):
        build_datalist("mias", folder, folder / "datalist.json", val_frac=0.0, test_frac=0.0)


def test_circle_label_malignant_wins_where_circles_overlap() -> None:
    from sum_monai.datalists.mias import MiasRow

    rows = [MiasRow(1, "mdb001", "F", "CIRC", "M", 10, 10, 5), MiasRow(2, "mdb001", "F", "CIRC", "B", 13, 10, 5)]
    label = circle_label(rows, 32, 32)
    assert label[32 - 1 - 10, 10] == 2 and label[32 - 1 - 10, 17] == 1


def test_predict_reads_a_pgm_film(mias: Path) -> None:
    from sum_monai.io.read import read_image

    image = read_image(mias / "mdb001.pgm")
    assert image.spatial_shape == (1024, 1024) and image.channels == 1
    raw = np.asarray(Image.open(mias / "mdb001.pgm"))  # (rows, columns)
    assert np.array_equal(image.numpy()[0], raw.T)  # MONAI's 2D layout (W, H), 8-bit values kept


def test_tiny_training_and_cad_evaluation_on_real_films(mias_subset: Path, tmp_path: Path) -> None:
    """Two epochs on six films at 64 px, then `sum-monai evaluate` prints the CAD figures of the mias layout."""
    import contextlib
    import io

    datalist = tmp_path / "dl" / "mias.json"
    assert main(["datalist", "mias", str(mias_subset), "--out", str(datalist), "--folds", "3", "--no-progress"]) == 0
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    small = ["--config", "configs/mias.json", "--set", "image_size=64", "--set", "batch_size=2",
             "--set", "network_def#channels=[8,16,32,64,128]",
             "--set", "patch_size=32"]  # fmt: skip
    repo = Path(__file__).resolve().parents[1]
    with contextlib.chdir(repo):
        assert main(["train", "--bundle", "mammo_seg_2d", "--data", str(datalist), "--output", str(tmp_path / "run"),
                     "--epochs", "2", "--tracking-uri", uri, *small]) == 0  # fmt: skip
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(["evaluate", "--bundle", "mammo_seg_2d", "--run", str(tmp_path / "run"), "--data", str(datalist),
                       "--split", "all", "--output", str(tmp_path / "eval"), "--tracking-uri", uri])  # fmt: skip
    assert status == 0
    text = printed.getvalue()
    threshold = json.loads((repo / "bundles" / "mammo_seg_2d" / "configs" / "evaluate.json").read_text())["lesion_threshold"]
    assert f"lesion detection at the bundle's lesion_threshold {threshold:g} (5 lesions, 6 films)" in text
    assert "FROC:" in text and "balanced accuracy" in text
    summary = json.loads((tmp_path / "eval" / "summary_detection.json").read_text())["detection"]
    assert sum(map(sum, summary["confusion"])) == 6 and 0.0 <= summary["sensitivity"] <= 1.0
    assert (tmp_path / "eval" / "froc.png").is_file()
