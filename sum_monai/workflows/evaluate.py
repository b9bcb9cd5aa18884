"""``sum-monai evaluate``: run a bundle's ``evaluate.json`` on a split, then tables and overlays.

The bundle computes the metrics (Dice, IoU, precision, recall, F1, HD95 per case, on the input's
own pixel grid); this module joins its CSVs into one per-case table keyed by anonymised case IDs,
summarises per class (e.g. benign / malignant), measures false-positive images among normal cases,
draws overlays and logs everything to an MLflow evaluation run.
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
from sum_monai.bundle.run import as_override_path, create_workflow, device_override, run_created
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
    """
    record = RunRecord.load(Path(run)) if run else None
    if record is not None:
        bundle = record.run_bundle(Path(run))
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.find(bundle)
    from monai.bundle import ConfigWorkflow

    if weights is None:
        weights = Path(run) / "models" / "model.pt" if run else bundle.root / "models" / "model.pt"
    weights = Path(weights)
    if not weights.is_file():
        raise ConfigError(f"{weights}: no trained weights (train first, or pass --weights / --run)")
    from sum_monai.bundle.weights import load_checked_state_dict

    # tensors only, and shaped for this bundle's network, or a clear error
    load_checked_state_dict(bundle, weights, overrides=overrides, workflow="evaluate")
    if data is None:
        if record is None:
            raise ConfigError("--data is required (a datalist JSON or a dataset folder)")
        data = record.datalist
    if output is None:
        output = Path(run) / f"evaluation-{split}" if run else RUNS_ROOT / bundle.name / f"eval-{time.strftime('%Y%m%d-%H%M%S')}"
    out = Path(output)
    _check_output(out)
    # everything is written into a scratch folder that replaces `out` only once complete: a failed or
    # killed evaluation leaves no half-written folder (and an earlier one whole)
    with atomic_dir(out, overwrite=True) as work:
        datalist = prepare_datalist(Path(data), work, seed=seed, require=())
        content = load_datalist(datalist)
        lesions = content.get("meta", {}).get("lesions")  # reference circles (mini-MIAS): CAD figures too
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

        run_overrides: dict[str, Any] = dict(
            data_list_file_path=as_override_path(datalist),
            output_dir=as_override_path(work),
            ckpt_path=as_override_path(weights),
            eval_split=split,
            prediction_root=root,
        )
        run_overrides.update(overrides or {})
        run_overrides.update(device_override(device))

        uri = store.tracking_uri(tracking_uri or (record.tracking_uri if record else None))
        run_name = f"eval-{split}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"  # unique: runs are found by name
        wf = create_workflow(bundle, "evaluate", run_overrides)  # the configs, parsed once
        params = config_params(wf.parser)
        params.update(eval_split=split, n_cases=str(len(cases)))
        with answering(uri, "before the evaluation"):
            store.ensure_experiment(uri, bundle.name)
        snapshot = str((work / "executed_evaluate_config.json").resolve())
        tracking = mlflow_settings("evaluate", uri, bundle.name, run_name, params, snapshot, has_guard(bundle.root))
        ConfigWorkflow.patch_bundle_tracking(parser=wf.parser, settings=tracking)
        with store.using(uri):
            run_created(wf, bundle)

        names = class_names(wf.parser.get("_meta_"))
        per_case: dict[str, dict[str, Any]] = read_raw_metrics(work, names)
        groups = {c.get("case_id", ""): str(c.get("class", "")) for c in cases if c.get("class")}
        preds = _prediction_files(work / "predictions")
        fp_images, normal_cases = 0, 0
        case_files: dict[str, dict[str, Any]] = {}
        for c, image in zip(cases, images, strict=True):
            cid = c.get("case_id", "")
            row = per_case.setdefault(cid, {})
            if c.get("class"):
                row["class"] = c["class"]
            pred_path = preds.get(str(Path(os.path.relpath(os.path.dirname(image), root)) / _stem(image)))
            case_files[cid] = {
                "image": image,
                "label": absolute_paths(c, base).get("label"),
                "prediction": str(out / pred_path.relative_to(work)) if pred_path else None,
                "class": c.get("class"),
            }
            if pred_path is None:
                continue
            pred_any = bool(_load_array(pred_path).any())
            row["predicted_lesion"] = float(pred_any)
            if math.isnan(row.get("dice", math.nan)):  # empty reference: a normal image
                normal_cases += 1
                fp_images += int(pred_any)
        summary: dict[str, Any] = summarise({k: {m: v for m, v in r.items() if isinstance(v, float)} for k, r in per_case.items()}, groups)
        if normal_cases:
            summary["normal_images"] = {"n": normal_cases, "share_with_predicted_lesion": fp_images / normal_cases}
        per_case_csv = write_per_case_csv(per_case, work / "per_case.csv")
        # local index of the files of each case (file names may identify patients: never logged)
        write_json(case_files, work / "cases.json")
        summary_json = write_json(
            {"bundle": bundle.name, "bundle_version": bundle.version, "split": split, "weights": str(weights), "summary": summary},
            work / "summary.json",
        )
        metric_cols = [m for m in TABLE_METRICS if any(m in r for r in per_case.values())]
        if len(names) > 1:
            metric_cols += [f"dice_{n}" for n in names]
        table = format_summary({k: v for k, v in summary.items() if k != "normal_images"}, metric_cols)
        if normal_cases:
            table += f"\nnormal images with any predicted lesion: {fp_images}/{normal_cases} ({100 * fp_images / normal_cases:.1f} %)"
        if lesions is not None:
            from sum_monai.workflows.detection import score_detection

            threshold = float(wf.parser.get_parsed_content("lesion_threshold")) if "lesion_threshold" in wf.parser else 0.5
            detection = score_detection(
                bundle, weights, [absolute_paths(c, base) for c in cases], lesions, overrides or {}, threshold, work
            )
            summary["detection"] = {k: v for k, v in detection.items() if k != "table"}
            table += "\n" + detection["table"]
            write_json(summary, work / "summary_detection.json")
        atomic_write_text(work / "summary.txt", table + "\n")

        overlays = _overlays(wf, cases, images, root, preds, per_case, work / "overlays.png", max_overlays)
        mlflow_run = find_run(uri, bundle.name, run_name)
        run_id = mlflow_run.info.run_id if mlflow_run else ""
        if run_id:
            log_artifacts(uri, run_id, [p for p in (per_case_csv, summary_json, work / "summary.txt", overlays, work / "froc.png") if p])
            if "detection" in summary:
                _log_detection_metrics(uri, run_id, summary["detection"])
            log_artifacts(uri, run_id, sorted(work.glob("*_raw.csv")) + sorted(work.glob("*_summary.csv")), "metrics")
            tags = {"bundle": bundle.name, "bundle_version": bundle.version, "workflow": "evaluate", "split": split}
            if record and record.mlflow_run_id:
                tags["source_run_id"] = record.mlflow_run_id
            set_tags(uri, run_id, tags)
    final = {p: out / p.name for p in (per_case_csv, summary_json) if p}
    return EvalResult(
        out, final[per_case_csv], final[summary_json], out / overlays.name if overlays else None, summary, table,
        run_id, uri,
    )


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
    wf: Any, cases: list[dict], images: list[str], root: str, preds: dict[str, Path],
    per_case: dict[str, dict[str, Any]], out_png: Path, max_cases: int,
) -> Path | None:
    """Overlays of the worst and best cases (by Dice) and one normal image, if any."""
    if max_cases <= 0:
        return None
    from monai.transforms import Compose

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
        pred_path = preds.get(str(Path(os.path.relpath(os.path.dirname(images[i]), root)) / _stem(images[i])))
        pred = _load_array(pred_path) if pred_path else None
        if pred is not None and pred.ndim == image.ndim:
            pred = pred[0]
        cid = cases[i].get("case_id", str(i))
        dice = per_case.get(cid, {}).get("dice", math.nan)
        title = f"{cid} {cases[i].get('class', '')}" + ("" if math.isnan(dice) else f" Dice {dice:.2f}")
        panels.append(OverlayCase(title, image, label, pred))
    return write_overlay_grid(panels, out_png)
