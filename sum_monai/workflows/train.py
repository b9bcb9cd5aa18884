"""``sum-monai train``: run a bundle's ``train.json`` with overrides, tracked in MLflow.

After the bundle's own trainer finishes, the run is completed here: TorchScript export, learning
curve, a packaged trained bundle (folder + zip) and a registered model version in MLflow.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sum_monai.bundle.export import archive_bundle, example_input_shape, export_torchscript, package_bundle
from sum_monai.bundle.locate import Bundle
from sum_monai.bundle.run import as_override_path, create_workflow, device_override, run_workflow
from sum_monai.errors import ConfigError, DataError
from sum_monai.tracking import store
from sum_monai.tracking.outage import answering, send_pending
from sum_monai.tracking.params import config_params
from sum_monai.tracking.runs import (
    find_run,
    log_artifacts,
    mark_failed,
    metric_history,
    register_torchscript,
    reopen,
    set_tags,
)
from sum_monai.tracking.settings import has_guard, mlflow_settings
from sum_monai.utils.atomic import make_dir
from sum_monai.workflows.data import prepare_datalist
from sum_monai.workflows.rundir import RunRecord, latest_run_dir, new_run_dir

logger = logging.getLogger(__name__)

#: Metrics drawn in the learning curve (whichever the run logged).
CURVE_METRICS = ("train_loss", "val_mean_dice", "val_mean_iou")


@dataclass
class TrainResult:
    """Where a finished training run put things."""

    run_dir: Path
    run_name: str
    mlflow_run_id: str
    model_pt: Path
    model_ts: Path
    trained_bundle: Path
    archive: Path
    learning_curve: Path
    best_val_dice: float | None
    epochs: int
    registered_model: str
    registered_version: str
    tracking_uri: str


def _parser_for(bundle: Bundle, workflow: str, overrides: dict[str, Any]) -> Any:
    """The bundle config with overrides applied, for reading values (not for running)."""
    return create_workflow(bundle, workflow, overrides).parser


def _torchrun(
    bundle: Bundle, overrides: dict[str, Any], tracking: dict, nproc: int, run_dir: Path
) -> None:
    """Train with DDP: ``torchrun --nproc_per_node N -m monai.bundle run`` with train + multi_gpu_train."""
    settings = run_dir / "tracking_settings.json"
    settings.write_text(json.dumps(tracking, indent=2))
    configs = [str(p) for p in bundle.configs("multi_gpu_train")]
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
        "-m", "monai.bundle", "run",
        "--config_file", json.dumps(configs),
        "--meta_file", str(bundle.config("metadata.json")),
        "--logging_file", str(bundle.root / "configs" / "logging.conf"),
        "--bundle_root", str(bundle.root),
        "--tracking", str(settings),
    ]  # fmt: skip
    for key, value in overrides.items():
        cmd += [f"--{key}", value if isinstance(value, str) else repr(value)]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    logger.info("launching: %s", " ".join(cmd))
    proc = subprocess.run(cmd, env=env, check=False)
    if proc.returncode != 0:
        raise ConfigError(f"torchrun training failed with exit status {proc.returncode} (see the log above)")


def train(
    bundle: str | Path | Bundle,
    data: str | Path | None = None,
    output: str | Path | None = None,
    epochs: int | None = None,
    device: str | None = None,
    resume: bool = False,
    tracking_uri: str | None = None,
    overrides: dict[str, Any] | None = None,
    nproc_per_node: int = 1,
    seed: int = 0,
) -> TrainResult:
    """Train ``bundle`` on ``data`` and complete the run (export, plots, bundle archive, registry).

    Args:
        bundle: bundle folder or the name of a bundle in ``bundles/``.
        data: a datalist JSON, or a dataset folder in a supported layout (a datalist with
            leakage-free splits is built into the run folder). Not needed with ``resume``.
        output: run folder; default ``runs/<bundle>/<timestamp>`` (with ``resume``: the newest run).
        epochs: total number of epochs (``epochs`` in the config).
        device: ``auto`` (CUDA with AMP if present, else CPU), ``cpu``, ``cuda``, ``cuda:1``.
        resume: continue the run in ``output`` from its last finished epoch (``models/last.pt``).
        tracking_uri: MLflow store; default ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlruns.db``.
        overrides: other config overrides, e.g. ``{"image_size": 128, "batch_size": 4}``;
            ``{"initial_weights": "runs/a/models/model.pt"}`` warm-starts from an earlier run's
            weights (checked against the configured network before anything is written).
        nproc_per_node: processes for DDP training through ``torchrun`` (``multi_gpu_train.json``).
        seed: seed of the datalist split when ``data`` is a folder.
    """
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.find(bundle)
    overrides = dict(overrides or {})
    if overrides.get("initial_weights") and not resume:  # before anything is written
        overrides["initial_weights"] = _checked_initial_weights(bundle, overrides)
    created = False
    if resume:
        run_dir = Path(output) if output else latest_run_dir(bundle.name)
        record = RunRecord.load(run_dir)
        last = run_dir / "models" / "last.pt"
        if not last.is_file():
            raise ConfigError(f"{run_dir}: nothing to resume (no models/last.pt: the run never finished an epoch)")
        trainer_state = _checked_last(bundle, last, {**record.overrides, **overrides})
        run_overrides = dict(record.overrides)
        uri = record.tracking_uri
    else:
        trainer_state = {}
        if data is None:
            raise ConfigError("--data is required (a datalist JSON or a dataset folder)")
        run_dir = Path(output) if output else None
        if run_dir is not None and run_dir.exists() and not run_dir.is_dir():
            raise DataError(run_dir, "is a file, not a folder: --output names the run folder")
        if run_dir is not None and (run_dir / "models" / "last.pt").exists():
            raise ConfigError(f"{run_dir} already holds a run; use --resume to continue it or choose another --output")
        run_overrides = dict(overrides)
        uri = store.tracking_uri(tracking_uri)
    run_overrides.update(overrides)
    if epochs is not None:
        run_overrides["epochs"] = int(epochs)
    run_overrides.update(device_override(device))
    _check_schedule(bundle, run_overrides)  # before anything is written
    if run_dir is None:
        run_dir = new_run_dir(bundle.name)
        created = True
    else:
        created = not run_dir.exists()
        make_dir(run_dir)
    with run_folder_lock(run_dir):
        try:
            if not resume:
                if (run_dir / "models" / "last.pt").exists():
                    raise ConfigError(f"{run_dir} already holds a run; use --resume to continue it or choose another --output")
                meta = bundle.metadata["network_data_format"]["inputs"]["image"]
                datalist = prepare_datalist(
                    Path(data), run_dir, seed=seed, require_lesions=("training", "validation"),
                    modality=str(meta.get("modality") or "") or None, spatial_dims=len(meta["spatial_shape"]),
                )  # fmt: skip
                run_overrides.update(
                    data_list_file_path=as_override_path(datalist),
                    ckpt_dir=as_override_path(run_dir / "models"),
                    output_dir=as_override_path(run_dir / "eval"),
                )
                record = RunRecord(
                    bundle=str(bundle.root), bundle_version=bundle.version, datalist=str(datalist),
                    run_name=f"train-{run_dir.name}-{uuid.uuid4().hex[:6]}", tracking_uri=uri,
                )  # fmt: skip
        except BaseException:
            if created:  # a new run folder that never started: leave nothing behind
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        return _train_locked(bundle, run_dir, record, run_overrides, trainer_state, resume, nproc_per_node)


def _train_locked(
    bundle: Bundle,
    run_dir: Path,
    record: RunRecord,
    run_overrides: dict[str, Any],
    trainer_state: dict,
    resume: bool,
    nproc_per_node: int,
) -> TrainResult:
    """Train (or resume) and complete the run in ``run_dir``, whose lock is held."""
    uri = record.tracking_uri
    record.overrides = {k: v for k, v in run_overrides.items() if k != "resume"}
    record.status = "running"
    record.save(run_dir)

    run_overrides["resume"] = resume
    workflow = "multi_gpu_train" if nproc_per_node > 1 else "train"
    # MLflow parameters are write-once: a resumed run keeps those of its first start (changed
    # settings such as a longer --epochs are recorded as a tag after the run)
    params = {} if resume else config_params(_parser_for(bundle, "train", run_overrides))
    with answering(uri, "before training"):
        store.ensure_experiment(uri, bundle.name)
    snapshot = str((run_dir / "eval" / "executed_train_config.json").resolve())
    tracking = mlflow_settings(workflow, uri, bundle.name, record.run_name, params, snapshot, has_guard(bundle.root))
    try:
        if resume and _trainer_finished(trainer_state, run_overrides.get("epochs")):
            # killed or failed after its last epoch (e.g. in the export): only the completion is left;
            # starting the trainer again would open a second, empty MLflow run
            print(f"{run_dir}: training had finished; completing the run", flush=True)
            return complete_run(bundle, run_dir, record)
        if resume:  # MONAI's handler never continues a FINISHED run: reopen it (more --epochs)
            reopen(uri, bundle.name, record.run_name)
        with store.using(uri):
            if nproc_per_node > 1:
                _torchrun(bundle, run_overrides, tracking, nproc_per_node, run_dir)
            else:
                run_workflow(bundle, "train", run_overrides, tracking)
        if resume:
            run = find_run(uri, bundle.name, record.run_name)
            if run is not None:
                set_tags(uri, run.info.run_id, {"resumed_with_epochs": str(run_overrides.get("epochs", ""))})
        return complete_run(bundle, run_dir, record)
    except BaseException:
        record.status = "failed"
        record.save(run_dir)
        mark_failed(uri, bundle.name, record.run_name)
        raise


@contextlib.contextmanager
def run_folder_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir/.lock`` while training writes into the run folder (``filelock``).

    A second training (or ``--resume``) with the same ``--output`` would interleave checkpoints,
    MLflow steps and registry versions of two runs; it is refused at once.

    Raises:
        ConfigError: another process holds the lock.
    """
    from filelock import FileLock, Timeout

    lock = FileLock(str(run_dir / ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout as err:
        raise ConfigError(
            f"{run_dir}: another process is training into it (it holds {run_dir / '.lock'}); wait for it to end "
            "or choose another --output"
        ) from err
    try:
        yield
    finally:
        lock.release()


def _check_schedule(bundle: Bundle, overrides: dict[str, Any]) -> None:
    """Refuse an ``epochs`` / ``val_interval`` pair that never validates (so never saves model.pt)."""
    parser = create_workflow(bundle, "train", overrides).parser
    try:
        epochs = int(parser.get_parsed_content("epochs"))
        interval = int(parser.get_parsed_content("val_interval"))
    except Exception:  # a bundle without these ids: nothing to check
        return
    if epochs < 1:
        raise ConfigError(f"--epochs {epochs}: at least 1 epoch is needed")
    if interval > epochs:
        raise ConfigError(
            f"--epochs {epochs} is shorter than val_interval {interval}: no validation would run, so no best model "
            f"(models/model.pt) would be saved; train at least {interval} epochs or --set val_interval={epochs}"
        )


def _checked_last(bundle: Bundle, last: Path, overrides: dict[str, Any]) -> dict:
    """The trainer state of a run's ``last.pt``, once its network weights are known to fit the bundle.

    Checked before MLflow or the trainer start (tensors only, same layers and shapes as the
    configured ``network_def``), so a ``last.pt`` of another network fails with its name.
    """
    from sum_monai.bundle.weights import check_state_dict, load_weights_only, network_from_bundle

    content = load_weights_only(last)
    if not isinstance(content, dict) or not isinstance(content.get("network"), dict):
        raise ConfigError(f"{last}: not a training checkpoint of sum-monai (no 'network' state dict in it)")
    net = network_from_bundle(bundle, overrides, workflow="train")
    check_state_dict(content["network"], net.state_dict(), last, network=f"network_def ({bundle.name})")
    trainer = content.get("trainer")
    return trainer if isinstance(trainer, dict) else {}


def _checked_initial_weights(bundle: Bundle, overrides: dict[str, Any]) -> str:
    """The warm-start checkpoint ``initial_weights`` as an absolute path, once it is known to fit.

    Checked before training starts (tensors only, same layers and shapes as the configured
    ``network_def``) so a wrong file fails with its name instead of inside the trainer.
    """
    from sum_monai.bundle.weights import load_checked_state_dict

    path = Path(str(overrides["initial_weights"]))
    load_checked_state_dict(bundle, path, overrides=overrides, workflow="train")
    return as_override_path(path)


def _trainer_finished(state: dict, epochs: int | None) -> bool:
    """Whether a checkpointed Ignite trainer ``state`` ran all its epochs (and ``epochs`` asks no more)."""
    length, done, max_epochs = state.get("epoch_length"), state.get("iteration", 0), state.get("max_epochs")
    if not length or not max_epochs:
        return False
    target = int(epochs) if epochs is not None else int(max_epochs)
    return done // int(length) >= target


def complete_run(bundle: Bundle, run_dir: Path, record: RunRecord) -> TrainResult:
    """Export, plot, package and register a training run whose trainer has finished.

    What the tracking server missed while it was away is sent first; a server that does not answer
    stops here with a ConfigError that says how to complete the run later (``--resume``).
    """
    model_pt = run_dir / "models" / "model.pt"
    if not model_pt.is_file():
        raise ConfigError(f"{run_dir}: training ended without models/model.pt (was the validation split empty?)")
    uri = record.tracking_uri
    resume = f"sum-monai train --bundle {bundle.root} --resume --output {run_dir}"
    # what the tracking server missed during the run (it was away): sent now, or a clear error
    for sent in send_pending(run_dir / "eval", uri, resume):
        print(f"MLflow: sent {sent['metrics']} metric values of epochs {sent['late_epochs']} late to run {sent['run_id']}")
    with answering(uri, f"completing the run; its checkpoints are in {run_dir / 'models'}; run `{resume}` later", None):
        return _complete_tracked_run(bundle, run_dir, record, model_pt)


def _complete_tracked_run(bundle: Bundle, run_dir: Path, record: RunRecord, model_pt: Path) -> TrainResult:
    """The part of :func:`complete_run` that needs the tracking server."""
    from sum_monai.reports.curves import plot_learning_curve

    uri = record.tracking_uri
    run = find_run(uri, bundle.name, record.run_name)
    if run is None:
        raise ConfigError(f"MLflow run {record.run_name!r} not found in {uri}")
    run_id = run.info.run_id

    model_ts = export_torchscript(bundle, model_pt, run_dir / "models" / "model.ts", record.overrides)
    history = metric_history(uri, run_id, CURVE_METRICS)
    curve = plot_learning_curve(history, run_dir / "learning_curve.png", title=f"{bundle.name} ({record.run_name})")
    dice = history.get("val_mean_dice")
    best = max(v for _, v in dice) if dice else None
    epochs = max((s for pts in history.values() for s, _ in pts), default=0)
    trained = package_bundle(
        bundle, run_dir / "bundle" / bundle.name, model_pt, model_ts,
        eval_metrics={"val_mean_dice": round(best, 4)} if best is not None else None, overrides=record.overrides,
    )  # fmt: skip
    archive = archive_bundle(trained, run_dir / f"{bundle.name}-{bundle.version}.zip")

    import numpy as np

    example = np.zeros(example_input_shape(trained), dtype=np.float32)
    log_artifacts(uri, run_id, [curve, archive])
    set_tags(uri, run_id, {"bundle": bundle.name, "bundle_version": bundle.version, "workflow": "train"})
    version = register_torchscript(uri, run_id, model_ts, bundle.name, bundle.version, input_example=example)
    record.status = "finished"
    record.mlflow_run_id = run_id
    record.save(run_dir)
    shutil.rmtree(run_dir / "models" / "__pycache__", ignore_errors=True)
    return TrainResult(
        run_dir=run_dir, run_name=record.run_name, mlflow_run_id=run_id, model_pt=model_pt, model_ts=model_ts,
        trained_bundle=trained.root, archive=archive, learning_curve=curve, best_val_dice=best, epochs=epochs,
        registered_model=bundle.name, registered_version=str(version.version), tracking_uri=uri,
    )  # fmt: skip
