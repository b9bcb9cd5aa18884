"""Package a cross-validation as one bundle: the fold models as an ensemble, with the CV's recipe and figures.

``sum-monai cv ... --package DIR`` writes ``DIR`` as a complete bundle: the source bundle's files
with the CV's recipe overrides baked into its configs (as a single training run's bundle gets
them), ``models/model.pt`` (fold 0; what the configs load and the model zoo checks),
``models/fold1.pt`` ... (the other members, which ``scripts.ensemble.EnsembleInferer`` finds beside
``model.pt``), ``models/model.ts`` exported from the packaged configs (so its embedded metadata is
the bundle's), the post-processing the CV chose (``mirror_axes``, ``min_lesion_fraction``,
``lesion_threshold``) and, in ``metadata.json``, the CV figures as ``eval_metrics``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from sum_monai.bundle.locate import Bundle
from sum_monai.errors import ConfigError

#: Config files whose post-processing settings the CV decides.
POSTPROCESSING_FILES = ("inference.json", "evaluate.json")


def cv_eval_metrics(report: dict[str, Any], record: Any) -> dict[str, Any]:
    """``eval_metrics`` of a packaged CV: mean and sd over folds of the figures a user would look at."""
    out: dict[str, Any] = {
        "source": f"{record.folds}-fold cross-validation over the development pool ({len(report['folds'])} folds "
        "trained and scored), every case scored by the fold model that never saw it (sum-monai cv); mean and sd over folds",
        "folds_scored": [int(k) for k in report["folds"]],
        "cases": report["cases"],
    }
    if Path(record.datalist).is_file():  # lets `sum-monai cv --init` check a later CV has the same folds
        from sum_monai.workflows.cv import folds_fingerprint
        from sum_monai.workflows.data import load_datalist

        out["folds_fingerprint"] = folds_fingerprint(load_datalist(Path(record.datalist)), Path(record.datalist))
    if getattr(record, "warm_start", ""):  # sum-monai cv --init
        out["warm_start"] = record.warm_start
    if report["kind"] == "segmentation":
        final = report["rows"][-1]
        out["post_processing"] = report["chosen"]
        out["figures"] = {k: {"mean": v[0], "sd": v[1]} for k, v in final["mean_sd"].items() if v[0] is not None}
        out["counts"] = final["counts"]
        out["levers"] = {r["name"]: {"dice": r["mean_sd"]["dice"], "normal_fp": r["mean_sd"]["normal_fp"]} for r in report["rows"]}
    else:
        chosen = report["variants"][report["chosen"]]
        out["post_processing"] = report["shipping"]
        out["figures"] = {k: {"mean": v[0], "sd": v[1]} for k, v in chosen["mean_sd"].items() if v[0] is not None}
        out["film_class_confusion"] = chosen["confusion"]
        out["froc"] = chosen["froc"]
        out["dice_against_circles"] = report["segmentation"]["mean_sd"]["dice"]
    return out


def _set_postprocessing(config_file: Path, settings: dict[str, Any], tta_axes: list[int]) -> None:
    content = json.loads(config_file.read_text())
    for key, value in (
        ("mirror_axes", list(tta_axes) if settings["mirror"] else []),
        ("min_lesion_fraction", float(settings["min_fraction"])),
        ("lesion_threshold", float(settings["threshold"])),
    ):
        if key not in content:
            raise ConfigError(f"{config_file}: has no '{key}' to set (a bundle packaged from a CV needs it)")
        content[key] = value
    config_file.write_text(json.dumps(content, indent=4) + "\n")


def package_cv(
    bundle: str | Path | Bundle, cv_dir: str | Path, out_dir: str | Path, version: str | None = None,
    changelog: str | None = None, finished_only: bool = False,
) -> Bundle:
    """Write the ensemble bundle of a finished cross-validation (see the module doc).

    Args:
        bundle: the source bundle (its current configs, scripts, docs).
        cv_dir: the CV folder, with every fold finished and ``cv_report.json`` written.
        out_dir: the bundle folder to write (replaced atomically).
        version: new ``version`` in ``metadata.json``; ``changelog`` its changelog entry.
        finished_only: package the finished folds when some are not (the report must cover exactly
            those); ``eval_metrics`` then says how many of the folds were trained and scored.

    Raises:
        ConfigError: a fold not finished, no report, or a config without the post-processing keys.
    """
    from sum_monai.bundle.export import add_weights, export_torchscript
    from sum_monai.bundle.recipe import write_recipe_bundle
    from sum_monai.bundle.run import create_workflow
    from sum_monai.bundle.zoo import write_large_files
    from sum_monai.workflows.cv import CVRecord
    from sum_monai.workflows.rundir import RunRecord

    bundle = bundle if isinstance(bundle, Bundle) else Bundle.find(bundle)
    cv_dir, out_dir = Path(cv_dir), Path(out_dir)
    record = CVRecord.load(cv_dir)
    report_file = cv_dir / "cv_report.json"
    if record is None or not report_file.is_file():
        raise ConfigError(f"{cv_dir}: no finished cross-validation report (run `sum-monai cv` first)")
    report = json.loads(report_file.read_text())
    folds = [cv_dir / f"fold{k}" for k in range(record.folds)]
    finished = [f for f in folds if (f / "run.json").is_file() and RunRecord.load(f).status == "finished"]
    if not finished_only and len(finished) < len(folds):
        missing = next(f for f in folds if f not in finished)
        raise ConfigError(f"{missing}: fold not finished; an ensemble needs every fold (rerun `sum-monai cv`, or --finished-only)")
    if sorted(int(k) for k in report["folds"]) != [int(f.name[len("fold"):]) for f in finished]:
        raise ConfigError(f"{report_file}: scores folds {report['folds']}, not the finished ones; run `sum-monai cv --no-train` again")
    folds = finished
    settings = report["chosen"] if report["kind"] == "segmentation" else report["shipping"]
    # the CV's recipe written into the source bundle, as every fold's run bundle got it
    packaged = write_recipe_bundle(bundle, out_dir, record.overrides)
    add_weights(packaged, folds[0] / "models" / "model.pt", eval_metrics=cv_eval_metrics(report, record))
    tta_axes = create_workflow(packaged, "train").parser.get_parsed_content("tta_axes")
    for fold in folds[1:]:  # fold<k>.pt after the CV fold it was trained for
        shutil.copy2(fold / "models" / "model.pt", packaged.root / "models" / f"{fold.name}.pt")
    for name in POSTPROCESSING_FILES:
        _set_postprocessing(packaged.root / "configs" / name, settings, [int(a) for a in tta_axes])
    if version:
        meta_path = packaged.root / "configs" / "metadata.json"
        meta = json.loads(meta_path.read_text())
        meta["version"] = version
        meta["changelog"] = {version: changelog or "ensemble of the cross-validation fold models", **meta.get("changelog", {})}
        meta_path.write_text(json.dumps(meta, indent=4) + "\n")
    packaged = Bundle(packaged.root)
    export_torchscript(packaged, packaged.root / "models" / "model.pt", packaged.root / "models" / "model.ts")
    # the zoo's list of the weight files with their md5, the URLs under the source bundle's name
    write_large_files(packaged, name=bundle.name)
    return packaged
