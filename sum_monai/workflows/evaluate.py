"""``sum-monai evaluate``: run a bundle's ``evaluate.json`` on a split, then tables and overlays.

The bundle computes the metrics (Dice, IoU, precision, recall, F1, HD95 per case, on the input's
own pixel grid); this module joins its CSVs into one per-case table keyed by anonymised case IDs,
summarises per class (e.g. benign / malignant),
draws overlays and logs everything to an MLflow evaluation run. The share of normal images with a
predicted lesion is the bundle's own ``val_normal_marked`` metric, so ``python -m monai.bundle run``
on the same bundle reports the same figure.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sum_monai.bundle.locate import Bundle
from sum_monai.bundle.run import as_override_path, create_workflow, run_created
from sum_monai.errors import ConfigError, DataError
from sum_monai.reports.overlays import OverlayCase, write_overlay_grid
from sum_monai.reports.tables import (
    format_summary,
    read_raw_metrics,
    summarise,
    write_json,
    write_per_case_csv,
)
from sum_monai.tracking import store
from sum_monai.tracking.outage import answering
from sum_monai.tracking.params import config_params
from sum_monai.tracking.runs import find_run, log_artifacts, set_tags
from sum_monai.tracking.settings import has_guard, mlflow_settings
from sum_monai.utils.atomic import atomic_dir, atomic_write_text
from sum_monai.workflows.data import SPLITS, absolute_paths, load_datalist, prepare_datalist
from sum_monai.workflows.rundir import RUNS_ROOT, RunRecord
from sum_monai.workflows.settings import RunOptions

logger = logging.getLogger(__name__)

TABLE_METRICS = ("dice", "iou", "precision", "recall", "f1", "hd95")


@dataclass
class EvalResult:
    """What an evaluation wrote and measured."""

    output_dir: Path
    per_case_csv: Path
    summary_json: Path
    overlays_png: Path | None
    summary: dict[str, Any]
    table: str
    mlflow_run_id: str
    tracking_uri: str


def _first(path: str | list[str]) -> str:
    return path[0] if isinstance(path, list) else path


def class_names(meta: dict) -> list[str]:
    """Names of the scored classes (output channels except background), in channel order.

    Args:
        meta: bundle metadata, as parsed with the run's overrides (``parser.get("_meta_")``), so a
            config that changes the classes (e.g. the DDSM tissue recipe) names them too.
    """
    channel_def = meta["network_data_format"]["outputs"]["pred"].get("channel_def", {})
    return [channel_def[k] for k in sorted(channel_def, key=int) if k != "0"]


def _prediction_files(pred_dir: Path) -> dict[str, Path]:
    """Saved predictions by the stem of the input they came from (``<stem>_seg.<ext>``)."""
    out: dict[str, Path] = {}
    for path in pred_dir.rglob("*_seg.*"):
        stem = path.name.split("_seg.")[0]
        out[str(path.parent.relative_to(pred_dir) / stem)] = path
    return out


def _prediction_key(image: str, root: str) -> str:
    """The key of ``image``'s prediction in :func:`_prediction_files` (its folder below ``root`` and its stem)."""
    return str(Path(os.path.relpath(os.path.dirname(image), root)) / _stem(image))


def _stem(path: str) -> str:
    name = Path(path).name
    for ext in (".nii.gz", ".nii", ".nrrd", ".png", ".jpg", ".jpeg", ".dcm", ".mha"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def evaluate(
    bundle: str | Path | Bundle,
    data: str | Path | None = None,
    run: str | Path | None = None,
    weights: str | Path | None = None,
    split: str = "test",
    output: str | Path | None = None,
    device: str | None = None,
    tracking_uri: str | None = None,
    overrides: dict[str, Any] | None = None,
    seed: int = 0,
    max_overlays: int = 8,
    precision: str | None = None,
) -> EvalResult:
    """Evaluate trained weights of ``bundle`` on one split of ``data``.

    Args:
        bundle: bundle folder or name (with ``run``: ignored, the run's own bundle is evaluated).
        data: datalist JSON or dataset folder (a folder is split with ``seed`` exactly as for
            training, so ``--split validation`` reproduces the training run's validation set).
            Defaults to the datalist of ``run``.
        run: a training run folder; its bundle (``bundle/<name>/``, recipe inside) and its
            ``models/model.pt`` are evaluated.
        weights: a ``model.pt`` to evaluate instead; default: the bundle's own ``models/model.pt``.
        split: ``training``, ``validation``, ``test`` or ``all``.
        output: output folder; default ``<run>/evaluation-<split>`` or ``runs/<bundle>/eval-<time>``.
        device: ``auto``, ``cpu``, ``cuda``...
        tracking_uri: MLflow store (default as for training).
        overrides: ad-hoc config values for this evaluation, as ``monai.bundle run --key value`` takes
            them (a run's bundle needs none: its recipe is in its configs).
        seed: split seed for a dataset folder.
        max_overlays: number of cases drawn in ``overlays.png``.
        precision: ``auto`` / ``None`` (the bundle's ``precision``), ``fp32``, ``bf16``, ``fp16``
            (what the device runs is decided by the bundle's ``scripts/precision.py``).
    """
    record = RunRecord.load(Path(run)) if run else None
    if record is not None:
        bundle = record.run_bundle(Path(run))
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.find(bundle)
    weights = Path(weights) if weights is not None else (Path(run) if run else bundle.root) / "models" / "model.pt"
    if not weights.is_file():
        raise ConfigError(f"{weights}: no trained weights (train first, or pass --weights / --run)")
    # the configs, parsed once: the weights are checked against this network (tensors only, same
    # layers and shapes, or a clear error) before anything is written; data paths are set later
    settings = RunOptions.given(device=device, precision=precision).overrides()
    wf = create_workflow(bundle, "evaluate", {**(overrides or {}), "ckpt_path": as_override_path(weights), **settings})
    from sum_monai.bundle.weights import load_checked_state_dict

    load_checked_state_dict(bundle, weights, network=wf.parser.get_parsed_content("network_def", instantiate=True))
    if data is None:
        if record is None:
            raise ConfigError("--data is required (a datalist JSON or a dataset folder)")
        data = record.datalist
    if output is None:
        output = Path(run) / f"evaluation-{split}" if run else RUNS_ROOT / bundle.name / f"eval-{time.strftime('%Y%m%d-%H%M%S')}"
    out = Path(output)
    _check_output(out)
    uri = store.tracking_uri(tracking_uri or (record.tracking_uri if record else None))
    # everything is written into a scratch folder that replaces `out` only once complete: a failed or
    # killed evaluation leaves no half-written folder (and an earlier one whole)
    with atomic_dir(out, overwrite=True) as work:
        split_cases = _split_cases(Path(data), work, split, seed, bundle)
        run_name = _run_bundle_evaluation(wf, bundle, split_cases, split, work, uri)
        per_case, case_files, preds = _case_table(wf, split_cases, work, out)
        summary, table = _summary(wf, per_case, split_cases.cases)
        per_case_csv = write_per_case_csv(per_case, work / "per_case.csv")
        # local index of the files of each case (file names may identify patients: never logged)
        write_json(case_files, work / "cases.json")
        summary_json = write_json(
            {"bundle": bundle.name, "bundle_version": bundle.version, "split": split, "weights": str(weights), "summary": summary},
            work / "summary.json",
        )
        if split_cases.lesions is not None:  # reference circles (mini-MIAS): CAD figures too
            from sum_monai.workflows.detection import score_detection

            threshold = float(wf.parser.get_parsed_content("lesion_threshold")) if "lesion_threshold" in wf.parser else 0.5
            detection = score_detection(
                bundle, weights, [absolute_paths(c, split_cases.base) for c in split_cases.cases], split_cases.lesions,
                overrides or {}, threshold, work,
            )  # fmt: skip
            summary["detection"] = {k: v for k, v in detection.items() if k != "table"}
            table += "\n" + detection["table"]
            write_json(summary, work / "summary_detection.json")
        atomic_write_text(work / "summary.txt", table + "\n")
        overlays = _overlays(wf, split_cases, preds, per_case, work / "overlays.png", max_overlays)
        run_id = _log_evaluation(uri, bundle, run_name, split, summary, record, work, [per_case_csv, summary_json, overlays])
    final = {p: out / p.name for p in (per_case_csv, summary_json) if p}
    return EvalResult(
        out, final[per_case_csv], final[summary_json], out / overlays.name if overlays else None, summary, table,
        run_id, uri,
    )


@dataclass(frozen=True)
class SplitCases:
    """The cases of the evaluated split and where their files are.

    Attributes:
        datalist: the datalist file the bundle reads (in the evaluation folder when it was built).
        base: the folder its paths are relative to.
        cases: the split's entries.
        images: each case's (first) image, absolute.
        root: the folder below which predictions mirror the inputs' sub-folders.
        lesions: reference circles of the datalist (mini-MIAS), if any.
    """

    datalist: Path
    base: Path
    cases: list[dict[str, Any]]
    images: list[str]
    root: str
    lesions: Any = None


def _split_cases(data: Path, work: Path, split: str, seed: int, bundle: Bundle) -> SplitCases:
    """Checked datalist of ``data`` and the cases of ``split`` (``all``: every split, absolute paths)."""
    datalist = prepare_datalist(data, work, seed=seed, require=(), bundle=bundle)
    content = load_datalist(datalist)
    lesions = content.get("meta", {}).get("lesions")
    base = datalist.resolve().parent
    if split == "all":  # one list of every case, with absolute paths as the file moves
        content = {"all": [absolute_paths(item, base) for s in SPLITS for item in content.get(s, [])]}
        datalist = work / "datalist_all.json"
        atomic_write_text(datalist, json.dumps(content, indent=1) + "\n")
    cases = content.get(split) or []
    if not cases:
        raise DataError(datalist, f"no cases in the {split!r} split")
    images = [os.path.abspath(base / _first(c["image"])) for c in cases]
    # predictions mirror the inputs' folders below this root; a DICOM series is named after its
    # folder, so the case folder above it is kept too (dicom/<case>/pre -> <case>/pre_seg.nii.gz)
    root = os.path.commonpath([os.path.dirname(os.path.dirname(p) if os.path.isdir(p) else p) for p in images])
    return SplitCases(datalist, base, cases, images, root, lesions)


def _run_bundle_evaluation(wf: Any, bundle: Bundle, split_cases: SplitCases, split: str, work: Path, uri: str) -> str:
    """Run the bundle's evaluation workflow on the split, in a new MLflow run; return the run's name."""
    from monai.bundle import ConfigWorkflow

    wf.parser.update({
        "data_list_file_path": as_override_path(split_cases.datalist), "output_dir": as_override_path(work),
        "eval_split": split, "prediction_root": split_cases.root,
    })  # fmt: skip
    run_name = f"eval-{split}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"  # unique: runs are found by name
    params = config_params(wf.parser)
    params.update(eval_split=split, n_cases=str(len(split_cases.cases)))
    with answering(uri, "before the evaluation"):
        store.ensure_experiment(uri, bundle.name)
    snapshot = str((work / "executed_evaluate_config.json").resolve())
    tracking = mlflow_settings("evaluate", uri, bundle.name, run_name, params, snapshot, has_guard(bundle.root))
    ConfigWorkflow.patch_bundle_tracking(parser=wf.parser, settings=tracking)
    with store.using(uri):
        run_created(wf, bundle)
    return run_name


def _case_table(
    wf: Any, split_cases: SplitCases, work: Path, out: Path
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], dict[str, Path]]:
    """Per-case metrics as the bundle wrote them (``*_raw.csv``), the files of each case, the predictions."""
    per_case: dict[str, dict[str, Any]] = read_raw_metrics(work, class_names(wf.parser.get("_meta_")))
    preds = _prediction_files(work / "predictions")
    case_files: dict[str, dict[str, Any]] = {}
    for c, image in zip(split_cases.cases, split_cases.images, strict=True):
        cid = c.get("case_id", "")
        row = per_case.setdefault(cid, {})
        if c.get("class"):
            row["class"] = c["class"]
        pred_path = preds.get(_prediction_key(image, split_cases.root))
        case_files[cid] = {
            "image": image,
            "label": absolute_paths(c, split_cases.base).get("label"),
            "prediction": str(out / pred_path.relative_to(work)) if pred_path else None,
            "class": c.get("class"),
        }
    return per_case, case_files, preds


def _summary(wf: Any, per_case: dict[str, dict[str, Any]], cases: list[dict[str, Any]]) -> tuple[dict[str, Any], str]:
    """Means per metric over all cases and per class, the normal images with a predicted lesion, the table.

    The normal-image share is the bundle's own ``val_normal_marked`` (one value per lesion-free image).
    """
    names = class_names(wf.parser.get("_meta_"))
    groups = {c.get("case_id", ""): str(c.get("class", "")) for c in cases if c.get("class")}
    scores = {k: {m: v for m, v in r.items() if isinstance(v, float) and m != "normal_marked"} for k, r in per_case.items()}
    summary: dict[str, Any] = summarise(scores, groups)
    marked = [r["normal_marked"] for r in per_case.values() if not math.isnan(r.get("normal_marked", math.nan))]
    metric_cols = [m for m in TABLE_METRICS if any(m in r for r in per_case.values())]
    if len(names) > 1:
        metric_cols += [f"dice_{n}" for n in names]
    table = format_summary(summary, metric_cols)
    if marked:
        summary["normal_images"] = {"n": len(marked), "share_with_predicted_lesion": sum(marked) / len(marked)}
        hits = int(sum(marked))
        table += f"\nnormal images with any predicted lesion: {hits}/{len(marked)} ({100 * hits / len(marked):.1f} %)"
    return summary, table


def _log_evaluation(
    uri: str, bundle: Bundle, run_name: str, split: str, summary: dict[str, Any], record: RunRecord | None,
    work: Path, files: list[Path | None],
) -> str:
    """Tables, overlays, the bundle's CSVs and the detection figures into the evaluation's MLflow run."""
    mlflow_run = find_run(uri, bundle.name, run_name)
    if mlflow_run is None:
        return ""
    run_id = mlflow_run.info.run_id
    log_artifacts(uri, run_id, [p for p in (*files, work / "summary.txt", work / "froc.png") if p and p.is_file()])
    if "detection" in summary:
        _log_detection_metrics(uri, run_id, summary["detection"])
    log_artifacts(uri, run_id, sorted(work.glob("*_raw.csv")) + sorted(work.glob("*_summary.csv")), "metrics")
    tags = {"bundle": bundle.name, "bundle_version": bundle.version, "workflow": "evaluate", "split": split}
    if record and record.mlflow_run_id:
        tags["source_run_id"] = record.mlflow_run_id
    set_tags(uri, run_id, tags)
    return run_id


def _check_output(out: Path) -> None:
    """``--output`` must be new, empty, or an earlier evaluation folder (it is replaced whole).

    Raises:
        DataError: it is a file, or a folder holding other files.
    """
    if out.exists() and not out.is_dir():
        raise DataError(out, "is a file, not a folder: --output names the folder the evaluation is written to")
    if out.is_dir() and any(out.iterdir()) and not (out / "summary.json").is_file():
        raise DataError(
            out,
            "holds other files and no summary.json: evaluate replaces --output as a whole, so it must be a new or "
            "empty folder, or an earlier evaluation folder",
        )


def _log_detection_metrics(uri: str, run_id: str, detection: dict[str, Any]) -> None:
    """CAD figures as MLflow metrics of the evaluation run."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    for key in ("sensitivity", "sensitivity_mass", "sensitivity_calcification", "sensitivity_other", "fp_per_film",
                "balanced_accuracy", "normal_with_lesion", "malignant_auc"):  # fmt: skip
        value = detection.get(key)
        if isinstance(value, float) and not math.isnan(value):
            client.log_metric(run_id, f"detection_{key}", value)


def _load_array(path: Path) -> np.ndarray:
    from monai.transforms import LoadImage

    return np.asarray(LoadImage(image_only=True)(str(path)))


def _overlays(
    wf: Any, split_cases: SplitCases, preds: dict[str, Path], per_case: dict[str, dict[str, Any]], out_png: Path,
    max_cases: int,
) -> Path | None:
    """Overlays of the worst and best cases (by Dice) and one normal image, if any."""
    if max_cases <= 0:
        return None
    from monai.transforms import Compose

    cases = split_cases.cases
    loader = Compose(wf.parser.get_parsed_content("load_transforms"))
    scored = [(per_case.get(c.get("case_id", ""), {}).get("dice", math.nan), i) for i, c in enumerate(cases)]
    lesion = sorted((d, i) for d, i in scored if not math.isnan(d))
    normal = [i for d, i in scored if math.isnan(d)]
    half = max_cases // 2
    picked = [i for _, i in lesion[:half]] + [i for _, i in lesion[-(max_cases - half - (1 if normal else 0)) :]]
    picked = list(dict.fromkeys(picked)) + normal[:1]
    panels = []
    base = Path(wf.parser.get_parsed_content("dataset_dir"))
    for i in picked[:max_cases]:
        item = {k: v for k, v in cases[i].items() if k in ("image", "label")}
        for key, value in item.items():
            item[key] = [str(base / v) for v in value] if isinstance(value, list) else str(base / value)
        loaded = loader(item)
        image = np.asarray(loaded["image"])
        label = np.asarray(loaded["label"])[0] if "label" in loaded else None
        pred_path = preds.get(_prediction_key(split_cases.images[i], split_cases.root))
        pred = _load_array(pred_path) if pred_path else None
        if pred is not None and pred.ndim == image.ndim:
            pred = pred[0]
        cid = cases[i].get("case_id", str(i))
        dice = per_case.get(cid, {}).get("dice", math.nan)
        title = f"{cid} {cases[i].get('class', '')}" + ("" if math.isnan(dice) else f" Dice {dice:.2f}")
        panels.append(OverlayCase(title, image, label, pred))
    return write_overlay_grid(panels, out_png)
