"""``sum-monai cv``: train and evaluate every fold of a cross-validation, grouped in MLflow.

The datalist comes from ``sum-monai datalist ... --folds K`` (a ``fold`` per case, groups whole).
Fold ``k`` trains on the other folds and is evaluated on fold ``k`` with the weights of its last
epoch: ``val_interval`` is set to the number of epochs, so the fold's validation images never pick
an epoch and the figure is out-of-fold. Each fold is an ordinary training run in
``OUT/fold<k>/`` (``--resume`` semantics per fold: a finished fold is skipped, a killed one
continues from its last epoch), and every fold run carries the MLflow tag
``mlflow.parentRunId`` of one parent run ``cv-<OUT name>``, which receives the mean and sd.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sum_monai.bundle.locate import Bundle
from sum_monai.errors import ConfigError, DataError
from sum_monai.utils.atomic import atomic_write_text
from sum_monai.workflows.data import SPLITS, absolute_paths, load_datalist

logger = logging.getLogger(__name__)

CV_RECORD = "cv.json"


@dataclass
class CVRecord:
    """What ``OUT/cv.json`` keeps: the recipe every fold shares and the MLflow parent run.

    Attributes:
        bundle: bundle folder.
        datalist: the folded datalist.
        folds: number of folds in it.
        overrides: config overrides shared by every fold.
        tracking_uri: MLflow store.
        parent_run_id: the MLflow run that groups the folds.
        initial_weights: ``--init`` as resolved (empty: every fold from scratch).
        warm_start: what the packaged bundle's ``eval_metrics`` say of it.
        start_md5: md5 of the weights each fold started from (a changed source is refused).
        members_of: CV-packaged bundles whose fold members are scored instead of fold runs
            (:func:`score_members`; empty: the folds are trained here).
    """

    bundle: str
    datalist: str
    folds: int
    overrides: dict[str, Any] = field(default_factory=dict)
    tracking_uri: str = ""
    parent_run_id: str = ""
    initial_weights: str = ""
    warm_start: str = ""
    start_md5: dict[str, str] = field(default_factory=dict)
    members_of: list[str] = field(default_factory=list)

    def save(self, out: Path) -> None:
        atomic_write_text(out / CV_RECORD, json.dumps(self.__dict__, indent=2) + "\n")

    @classmethod
    def load(cls, out: Path) -> CVRecord | None:
        path = out / CV_RECORD
        return cls(**json.loads(path.read_text())) if path.is_file() else None


def fold_count(datalist: dict[str, Any], path: Path) -> int:
    """Number of folds of a datalist made with ``--folds``.

    Raises:
        DataError: the datalist has no ``fold`` on its cases.
    """
    folds = {item.get("fold") for s in ("training", "validation") for item in datalist.get(s, [])}
    if None in folds or not folds:
        raise DataError(path, "no cross-validation folds: make the datalist with `sum-monai datalist ... --folds 5`")
    return len(folds)


def fold_datalist(datalist: dict[str, Any], base: Path, fold: int) -> dict[str, Any]:
    """The datalist of one fold: ``validation`` = the cases of ``fold``, ``training`` = the others.

    Paths are made absolute against ``base`` (the source datalist's folder) so the fold's file can
    live anywhere; the test split, if any, is kept as it is.
    """
    pool = [absolute_paths(item, base) for s in ("training", "validation") for item in datalist.get(s, [])]
    out = {
        "meta": {**datalist.get("meta", {}), "cv_fold": fold},
        "training": [item for item in pool if item["fold"] != fold],
        "validation": [item for item in pool if item["fold"] == fold],
        "test": [absolute_paths(item, base) for item in datalist.get("test", [])],
    }
    return out


def folds_fingerprint(datalist: dict[str, Any], path: Path) -> str:
    """A short hash of the datalist's ``(image, fold)`` pairs: equal only for the same cases in the same folds.

    Images are named by their path under the dataset root (``meta.root``), not by ``case_id``: case
    ids are keyed by a per-machine salt (:mod:`sum_monai.datalists.ids`), while the folds are not
    (they are drawn from the raw file keys), so the same folds give the same fingerprint on any machine.

    Args:
        datalist: a folded datalist.
        path: its file (image paths in it are relative to its folder).
    """
    import hashlib
    import os

    base = Path(path).resolve().parent
    root = (base / datalist.get("meta", {}).get("root", ".")).resolve()

    def name(item: dict[str, Any]) -> str:
        image = absolute_paths(item, base)["image"]
        return Path(os.path.relpath(image[0] if isinstance(image, list) else image, root)).as_posix()

    pairs = sorted(f"{name(item)}:{item.get('fold')}" for s in ("training", "validation") for item in datalist.get(s, []))
    return hashlib.sha256("\n".join(pairs).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class WarmStart:
    """Where the folds of a CV warm-start from (``sum-monai cv --init``), checked against the CV's folds.

    Attributes:
        source: a CV-packaged bundle folder, or a weights path (``{fold}`` becomes the fold number).
        label: what ``eval_metrics`` says of it (``warm_start``).
        members: for a bundle, the fold each member was trained for (``eval_metrics.folds_scored``:
            ``models/model.pt`` is the first, ``models/fold<k>.pt`` the others).
    """

    source: Path
    label: str
    members: tuple[int, ...] = ()

    @classmethod
    def resolve(cls, given: str | Path, datalist: dict[str, Any], path: Path) -> WarmStart:
        """Resolve ``--init`` (a path, or a bundle name as ``--bundle`` takes) and check it fits these folds.

        A bundle must have been cross-validated on the same folds (``eval_metrics.folds_fingerprint``,
        or for older bundles the case count); a ``{fold}`` path inside another CV folder (its
        ``cv.json``) must come from a CV of the same folds. A plain file starts every fold alike
        and must not have been trained on the pool: that is the caller's word.

        Raises:
            DataError: the source's folds are not these.
        """
        text = str(given)
        source = Path(text)
        if not source.exists() and "{fold}" not in text:
            source = Bundle.find(text).root
        source = Path(str(source.resolve()))
        mine = folds_fingerprint(datalist, path)
        if source.is_dir():
            meta_file = source / "configs" / "metadata.json"
            meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
            metrics = meta.get("eval_metrics", {})
            pool = sum(len(datalist.get(s, [])) for s in ("training", "validation"))
            theirs = metrics.get("folds_fingerprint")
            if (theirs is not None and theirs != mine) or (theirs is None and metrics.get("cases") not in (None, pool)):
                raise DataError(path, f"the folds of {source} are not this datalist's: its members would start folds "
                                "whose images they saw")  # fmt: skip
            label = f"fold k warm-started from the fold-k member of {source.name} version {meta.get('version', '?')} (the same folds)"
            return cls(source, label, tuple(int(k) for k in metrics.get("folds_scored", [])))
        cv_dir = next((d for d in Path(text.replace("{fold}", "0")).resolve().parents if (d / CV_RECORD).is_file()), None)
        if "{fold}" in text and cv_dir is not None:
            other = CVRecord.load(cv_dir)
            if folds_fingerprint(load_datalist(Path(other.datalist)), Path(other.datalist)) != mine:
                raise DataError(path, f"the folds of the cross-validation {cv_dir} are not this datalist's: its fold "
                                "models would start folds whose images they saw")  # fmt: skip
            return cls(source, f"fold k warm-started from fold k of the cross-validation {cv_dir.name} (the same folds)")
        if "{fold}" in text:
            return cls(source, f"fold k warm-started from {source} (fold k for {{fold}}; folds not checked)")
        return cls(source, f"every fold warm-started from {source.name} (weights not trained on this pool)")

    def weights(self, fold: int) -> Path:
        """The weights fold ``fold`` starts from.

        Raises:
            ConfigError: they do not exist.
        """
        path = Path(str(self.source).replace("{fold}", str(fold)))
        if path.is_dir():
            first = self.members[0] if self.members else 0
            path = path / "models" / ("model.pt" if fold == first else f"fold{fold}.pt")
        if not path.is_file():
            raise ConfigError(f"{path}: no warm-start weights for fold {fold} (--init: a CV-packaged bundle or a weights file)")
        return path


def _parent_run(record: CVRecord, bundle: Bundle, name: str) -> str:
    """The MLflow parent run of the CV (created once, its id kept in ``cv.json``)."""
    from sum_monai.tracking import store

    if record.parent_run_id:
        return record.parent_run_id
    import mlflow

    store.ensure_experiment(record.tracking_uri, bundle.name)
    client = mlflow.MlflowClient(record.tracking_uri)
    experiment = client.get_experiment_by_name(bundle.name)
    run = client.create_run(
        experiment.experiment_id, run_name=f"cv-{name}", tags={"workflow": "cv", "cv_folds": str(record.folds)}
    )
    for key, value in sorted(record.overrides.items()):
        client.log_param(run.info.run_id, key.replace("#", ".")[:250], json.dumps(value)[:6000])
    client.set_terminated(run.info.run_id, "FINISHED")  # a grouping run: never left RUNNING; metrics follow
    return run.info.run_id


def run_folds(
    bundle: str | Path | Bundle,
    data: str | Path,
    out: str | Path,
    overrides: dict[str, Any] | None = None,
    folds: Sequence[int] | None = None,
    epochs: int | None = None,
    device: str | None = None,
    tracking_uri: str | None = None,
    num_workers: int | None = None,
    cache_rate: float | None = None,
    precision: str | None = None,
    initial_weights: str | Path | None = None,
) -> list[Path]:
    """Train the folds of a cross-validation (skipping finished ones, resuming killed ones).

    Args:
        bundle: bundle folder or name.
        data: datalist JSON made with ``--folds K``.
        out: CV folder; fold ``k`` trains into ``out/fold<k>``.
        overrides: recipe overrides shared by every fold.
        folds: which folds to train (default all).
        epochs: total epochs per fold (``epochs`` in the config).
        device: as for ``sum-monai train``.
        tracking_uri: MLflow store.
        num_workers, cache_rate, precision: data loading and precision of every fold (not recipe).
        initial_weights: warm start of every fold (:class:`WarmStart`: a CV-packaged bundle of the
            same folds gives each fold its own member, so no fold starts from weights that saw its images).

    Returns:
        the fold run folders, in fold order.

    Raises:
        ConfigError: ``out`` holds a CV with another recipe, datalist or start; a fold's start weights are missing.
        DataError: the datalist has no folds, or ``initial_weights`` is a bundle cross-validated on another pool.
    """
    from sum_monai.bundle.zoo import md5
    from sum_monai.tracking import store
    from sum_monai.tracking.runs import find_run, set_tags
    from sum_monai.workflows.rundir import RunRecord
    from sum_monai.workflows.settings import check_recipe
    from sum_monai.workflows.train import train

    bundle = bundle if isinstance(bundle, Bundle) else Bundle.find(bundle)
    data, out = Path(data), Path(out)
    datalist = load_datalist(data)
    n_folds = fold_count(datalist, data)
    shared = dict(overrides or {})
    if epochs is not None:
        shared["epochs"] = int(epochs)
    check_recipe(shared)  # before anything is written
    uri = store.tracking_uri(tracking_uri)
    warm = WarmStart.resolve(initial_weights, datalist, data) if initial_weights else None
    init = str(warm.source) if warm else ""
    record = CVRecord(str(bundle.root), str(data.resolve()), n_folds, shared, uri, initial_weights=init,
                      warm_start=warm.label if warm else "")  # fmt: skip
    earlier = CVRecord.load(out)
    if earlier is not None:
        if (earlier.datalist, earlier.overrides, earlier.bundle, earlier.initial_weights) != (
            record.datalist, record.overrides, record.bundle, record.initial_weights
        ):  # fmt: skip
            raise ConfigError(
                f"{out} holds a cross-validation of another recipe, datalist or --init ({out / CV_RECORD}); "
                "choose another --output"
            )
        record = earlier
    chosen = list(range(n_folds)) if folds is None else list(folds)
    bad = [k for k in chosen if not 0 <= k < n_folds]
    if bad:
        raise ConfigError(f"no fold {bad[0]}: the datalist has folds 0..{n_folds - 1}")
    fold_dirs = [out / f"fold{k}" for k in range(n_folds)]
    fresh = [k for k in chosen if not (fold_dirs[k] / "models" / "last.pt").is_file()]  # the others resume
    starts = {k: warm.weights(k) for k in fresh} if warm else {}  # all checked before anything is written
    for k, path in starts.items():
        digest, seen = md5(path), record.start_md5.get(str(k))
        if seen is not None and seen != digest:
            raise ConfigError(f"{path}: not the weights fold {k} of {out} started from before (md5 changed); "
                              "choose another --output")  # fmt: skip
        record.start_md5[str(k)] = digest
    out.mkdir(parents=True, exist_ok=True)
    record.parent_run_id = _parent_run(record, bundle, out.name)
    record.save(out)
    for k in chosen:
        fold_dir = fold_dirs[k]
        state = RunRecord.load(fold_dir).status if (fold_dir / "run.json").is_file() else None
        if state == "finished":
            logger.info("fold %d: finished earlier (%s)", k, fold_dir)
            continue
        print(f"== fold {k + 1}/{n_folds}: {fold_dir}", flush=True)
        fold_overrides = dict(shared)
        fold_overrides.setdefault("val_interval", int(fold_overrides.get("epochs") or _config_epochs(bundle, shared)))
        if (fold_dir / "models" / "last.pt").is_file():
            result = train(
                bundle, output=fold_dir, resume=True, device=device, num_workers=num_workers, cache_rate=cache_rate,
                precision=precision,
            )  # fmt: skip
        else:
            fold_dir.mkdir(parents=True, exist_ok=True)
            fold_file = fold_dir / "datalist.json"
            atomic_write_text(fold_file, json.dumps(fold_datalist(datalist, data.resolve().parent, k), indent=1) + "\n")
            result = train(
                bundle, fold_file, fold_dir, device=device, tracking_uri=uri, overrides=fold_overrides,
                num_workers=num_workers, cache_rate=cache_rate, precision=precision, initial_weights=starts.get(k),
            )  # fmt: skip
        run = find_run(uri, bundle.name, result.run_name)
        if run is not None:
            set_tags(uri, run.info.run_id, {"mlflow.parentRunId": record.parent_run_id, "cv_fold": str(k), "cv": out.name})
    return fold_dirs


def score_members(
    bundles: Sequence[str | Path], data: str | Path, out: str | Path, tracking_uri: str | None = None
) -> CVRecord:
    """Set up ``out`` to score the fold members of CV-packaged bundles out of fold, without training.

    Member ``k`` of each bundle predicts fold ``k`` (the fold it never saw); with several bundles of
    the same folds (e.g. the snapshots of successive warm restarts), fold ``k``'s probabilities are
    the mean over their fold-``k`` members. :func:`report_folds` then predicts and scores them as it
    does trained folds, so a packaged bundle's figures can be re-measured on any machine.

    Raises:
        ConfigError: ``out`` holds another cross-validation; a bundle is not CV-packaged.
        DataError: a bundle was cross-validated on other folds.
    """
    from sum_monai.tracking import store

    data, out = Path(data), Path(out)
    datalist = load_datalist(data)
    sources = [WarmStart.resolve(b, datalist, data) for b in bundles]  # each checked against these folds
    for given, source in zip(bundles, sources, strict=True):
        if not source.members:
            raise ConfigError(f"{given}: not a bundle packaged by `sum-monai cv --package` (no eval_metrics.folds_scored)")
    first = Bundle.find(sources[0].source)
    record = CVRecord(str(first.root), str(data.resolve()), fold_count(datalist, data),
                      tracking_uri=store.tracking_uri(tracking_uri), members_of=[str(s.source) for s in sources])  # fmt: skip
    earlier = CVRecord.load(out)
    if earlier is not None:
        if (earlier.datalist, earlier.members_of) != (record.datalist, record.members_of):
            raise ConfigError(f"{out} holds another cross-validation ({out / CV_RECORD}); choose another --output")
        record = earlier
    out.mkdir(parents=True, exist_ok=True)
    record.parent_run_id = _parent_run(record, first, out.name)
    record.save(out)
    return record


def predict_members(record: CVRecord, out: Path, mirror_axes: Sequence[int]) -> Path:
    """Out-of-fold ``.npz`` of the folds every bundle of ``record.members_of`` has a member for.

    Raises:
        ConfigError: the bundles share no fold.
    """
    from sum_monai.workflows.oof import GridPredictor, write_oof

    data = Path(record.datalist)
    datalist = load_datalist(data)
    sources = [WarmStart.resolve(b, datalist, data) for b in record.members_of]
    folds = sorted(set.intersection(*(set(s.members) for s in sources)))
    if not folds:
        raise ConfigError(f"{', '.join(record.members_of)}: no fold has a member in every bundle")
    oof = out / "oof"
    oof.mkdir(parents=True, exist_ok=True)
    for k in folds:
        cases = fold_datalist(datalist, data.resolve().parent, k)["validation"]

        def predictors(k: int = k) -> list[GridPredictor]:
            return [GridPredictor.from_bundle(Bundle.find(s.source), s.weights(k)) for s in sources]

        write_oof(predictors, cases, oof, mirror_axes, k)
    return oof


@dataclass(frozen=True)
class CVReport:
    """Where the report of a cross-validation went, and its text."""

    text: str
    markdown: Path
    json: Path
    folds: list[int]


def report_folds(bundle: str | Path | Bundle, out: str | Path, max_normal_fp: float = 0.15) -> CVReport:
    """Predict every finished fold out of fold, score the post-processing levers, write and log the report.

    Args:
        bundle: the bundle of the CV.
        out: the CV folder.
        max_normal_fp: the operating point's budget of normal images with a predicted lesion.

    Raises:
        ConfigError: no CV in ``out`` or no finished fold.
    """
    from sum_monai.bundle.run import create_workflow
    from sum_monai.scoring.report import detection_report, segmentation_report, write_report
    from sum_monai.workflows.oof import load_oof, predict_out_of_fold

    bundle = bundle if isinstance(bundle, Bundle) else Bundle.find(bundle)
    out = Path(out)
    record = CVRecord.load(out)
    if record is None:
        raise ConfigError(f"{out}: not a cross-validation folder (no {CV_RECORD}); run `sum-monai cv` with --data first")
    axes = create_workflow(bundle, "train", record.overrides).parser.get_parsed_content("tta_axes")  # the CV's recipe
    mirror_axes = [int(a) for a in axes]
    if record.members_of:
        oof_dir = predict_members(record, out, mirror_axes)
    else:
        oof_dir = predict_out_of_fold(bundle, out, mirror_axes)
    cases = load_oof(oof_dir)
    lesions = load_datalist(Path(record.datalist)).get("meta", {}).get("lesions")
    if lesions is not None:
        report = detection_report(cases, lesions, out)
    else:
        report = segmentation_report(cases, out, max_normal_fp)
    folds = report["folds"]
    title = f"{bundle.name}: {len(folds)}-fold cross-validation, {report['cases']} out-of-fold cases ({out.name})"
    js, md = write_report(report, out, title)
    _log_parent(record, report, [js, md, *(p for p in (out / "trade_off.png", out / "froc.png") if p.is_file())])
    return CVReport(f"{title}\n\n{report['table']}", md, js, folds)


def _log_parent(record: CVRecord, report: dict[str, Any], artifacts: list[Path]) -> None:
    """Mean and sd of the final figures as metrics of the MLflow parent run, the report as artifacts."""
    import mlflow

    from sum_monai.tracking.runs import log_artifacts

    client = mlflow.MlflowClient(record.tracking_uri)
    if report["kind"] == "segmentation":
        mean_sd = report["rows"][-1]["mean_sd"]
    else:
        mean_sd = report["variants"][report["chosen"]]["mean_sd"]
    for name, (mean, sd) in mean_sd.items():
        if mean is not None:
            client.log_metric(record.parent_run_id, f"cv_{name}_mean", float(mean))
            client.log_metric(record.parent_run_id, f"cv_{name}_sd", float(sd))
    log_artifacts(record.tracking_uri, record.parent_run_id, artifacts)


def _config_epochs(bundle: Bundle, overrides: dict[str, Any]) -> int:
    """``epochs`` of the bundle's train config with ``overrides`` applied."""
    from sum_monai.bundle.run import create_workflow

    return int(create_workflow(bundle, "train", overrides).parser.get_parsed_content("epochs"))


def splits_of(datalist: dict[str, Any]) -> tuple[str, ...]:
    """Splits present in a datalist (for messages)."""
    return tuple(s for s in SPLITS if datalist.get(s))
