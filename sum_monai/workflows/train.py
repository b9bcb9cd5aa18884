"""``sum-monai train``: a run is a bundle: write the recipe into ``RUN/bundle/<name>/``, train that, track it in MLflow.

After the bundle's own trainer finishes, the run is completed here: TorchScript export, learning
curve, the weights added to the run's bundle (folder + zip) and a registered model version in MLflow.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sum_monai.bundle.export import add_weights, archive_bundle, example_input_shape, export_torchscript
from sum_monai.bundle.locate import Bundle
from sum_monai.bundle.recipe import write_recipe, write_recipe_bundle
from sum_monai.bundle.run import create_workflow, device_override, run_created
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
from sum_monai.workflows.settings import RunOptions, RunSettings, check_recipe

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


def _torchrun(bundle: Bundle, overrides: dict[str, Any], tracking: dict, nproc: int, run_dir: Path) -> None:
    """Train with DDP: ``torchrun --nproc_per_node N -m monai.bundle run`` with train + multi_gpu_train.

    ``overrides`` are the run's settings only: the recipe is in ``bundle``'s configs.
    """
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
    initial_weights: str | Path | None = None,
    num_workers: int | None = None,
    cache_rate: float | None = None,
    precision: str | None = None,
) -> TrainResult:
    """Train ``bundle`` on ``data`` and complete the run (export, plots, bundle archive, registry).

    The run's bundle, ``<output>/bundle/<name>/``, is written first: ``bundle``'s files with the
    recipe (``overrides``, ``epochs``) in its configs. Training runs that folder; the finished run
    adds its weights to it, and that folder is what evaluation, export, MLflow and MONAI Label use.

    Args:
        bundle: bundle folder or the name of a bundle in ``bundles/``.
        data: a datalist JSON, or a dataset folder in a supported layout (a datalist with
            leakage-free splits is built into the run folder). Not needed with ``resume``.
        output: run folder; default ``runs/<bundle>/<timestamp>`` (with ``resume``: the newest run).
        epochs: total number of epochs (``epochs`` in the config; recipe).
        device: ``auto`` (CUDA with AMP if present, else CPU), ``cpu``, ``cuda``, ``cuda:1``.
        resume: continue the run in ``output`` from its last finished epoch (``models/last.pt``);
            recipe values given with it (e.g. more ``epochs``) are written into the run's bundle.
        tracking_uri: MLflow store; default ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlruns.db``.
        overrides: the recipe: config ids and values, e.g. ``{"image_size": 128, "batch_size": 4}``;
            run settings (data, folders, device...) are refused here, they have their own arguments.
        nproc_per_node: processes for DDP training through ``torchrun`` (``multi_gpu_train.json``).
        seed: seed of the datalist split when ``data`` is a folder.
        initial_weights: warm start from these network weights (e.g. an earlier run's
            ``models/model.pt``), checked against the configured network before anything is written.
        num_workers: data-loader worker processes (default: the bundle's).
        cache_rate: share of the training set cached in memory (default: the bundle's).
        precision: ``auto`` (the bundle's ``precision``), ``fp32``, ``bf16`` (bf16 autocast on a CPU
            with AVX512-BF16 / AMX or a GPU; fp32 on other CPUs, and the log says so) or ``fp16`` (GPUs).
    """
    source = bundle if isinstance(bundle, Bundle) else Bundle.find(bundle)
    recipe = dict(overrides or {})
    if epochs is not None:
        recipe["epochs"] = int(epochs)
    check_recipe(recipe)
    options = RunOptions.given(device, precision, initial_weights, num_workers, cache_rate)
    _check_precision(options.precision)
    if resume:
        run_dir = Path(output) if output else latest_run_dir(source.name)
        record = RunRecord.load(run_dir)
        if not (run_dir / "models" / "last.pt").is_file():
            raise ConfigError(f"{run_dir}: nothing to resume (no models/last.pt: the run never finished an epoch)")
        record.options = record.options.updated(options)  # options given again replace the recorded ones
        run_bundle = record.run_bundle(run_dir)
        with run_folder_lock(run_dir):
            if recipe:  # checked on a scratch copy first: a refused change leaves the run's bundle as it was
                with tempfile.TemporaryDirectory() as tmp:
                    scratch = write_recipe_bundle(run_bundle, Path(tmp) / run_bundle.name, recipe)
                    _open_checked(scratch, record.settings(run_dir, True), run_dir)
                write_recipe(run_bundle.root, recipe)
            wf, trainer_state = _open_checked(run_bundle, record.settings(run_dir, True), run_dir)
            return _train_locked(run_bundle, run_dir, record, wf, trainer_state, True, nproc_per_node)
    if data is None:
        raise ConfigError("--data is required (a datalist JSON or a dataset folder)")
    run_dir = Path(output) if output else None
    if run_dir is not None and run_dir.exists() and not run_dir.is_dir():
        raise DataError(run_dir, "is a file, not a folder: --output names the run folder")
    if run_dir is not None and (run_dir / "models" / "last.pt").exists():
        raise ConfigError(f"{run_dir} already holds a run; use --resume to continue it or choose another --output")
    if device and device != "auto":
        device_override(device)  # a CUDA device on a machine without one: refused before anything is written
    if run_dir is None:
        run_dir, created = new_run_dir(source.name), True
    else:
        created = not run_dir.exists()
        make_dir(run_dir)
    with run_folder_lock(run_dir):
        try:
            if (run_dir / "models" / "last.pt").exists():
                raise ConfigError(f"{run_dir} already holds a run; use --resume to continue it or choose another --output")
            run_bundle = write_recipe_bundle(source, RunRecord.bundle_dir(run_dir, source.name), recipe)
            datalist = prepare_datalist(Path(data), run_dir, seed=seed, require_lesions=("training", "validation"), bundle=run_bundle)
            record = RunRecord(
                bundle=str(source.root), bundle_version=source.version, datalist=str(datalist.resolve()),
                run_name=f"train-{run_dir.name}-{uuid.uuid4().hex[:6]}", tracking_uri=store.tracking_uri(tracking_uri),
                options=options,
            )  # fmt: skip
            wf, _ = _open_checked(run_bundle, record.settings(run_dir), run_dir)
        except BaseException:
            if created:  # a new run folder that never started: leave nothing behind
                shutil.rmtree(run_dir, ignore_errors=True)
            else:
                shutil.rmtree(run_dir / "bundle", ignore_errors=True)
            raise
        return _train_locked(run_bundle, run_dir, record, wf, {}, False, nproc_per_node)


def _check_precision(precision: str | None) -> None:
    """A precision name the bundles know, refused before anything is written."""
    from sum_monai.utils.precision import PRECISIONS

    if precision is not None and precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; one of {', '.join(PRECISIONS)}")


def _open_checked(run_bundle: Bundle, settings: RunSettings, run_dir: Path) -> tuple[Any, dict]:
    """The run's train workflow (configs parsed once, not yet initialised), checked before training.

    Checks, all before MLflow or the trainer start: an ``epochs`` / ``val_interval`` pair that
    validates; warm-start weights and a resumed ``last.pt`` that fit the configured network.

    Returns:
        the workflow and, when resuming, the trainer state of ``last.pt``.
    """
    wf = create_workflow(run_bundle, "train", settings.overrides())
    _check_schedule(wf.parser)
    network = None
    if settings.options.initial_weights is not None and not settings.resume:
        from sum_monai.bundle.weights import load_checked_state_dict

        network = wf.parser.get_parsed_content("network_def", instantiate=True)
        load_checked_state_dict(run_bundle, settings.options.initial_weights, network=network)
    trainer_state: dict = {}
    if settings.resume:
        network = network or wf.parser.get_parsed_content("network_def", instantiate=True)
        trainer_state = _checked_last(run_bundle, run_dir / "models" / "last.pt", network)
    return wf, trainer_state


def _train_locked(
    bundle: Bundle,
    run_dir: Path,
    record: RunRecord,
    wf: Any,
    trainer_state: dict,
    resume: bool,
    nproc_per_node: int,
) -> TrainResult:
    """Train (or resume) the run's ``bundle`` in ``run_dir`` (lock held) with the workflow ``wf``."""
    uri = record.tracking_uri
    record.status = "running"
    record.save(run_dir)
    workflow = "multi_gpu_train" if nproc_per_node > 1 else "train"
    # MLflow parameters are write-once: a resumed run keeps those of its first start (changed
    # settings such as a longer --epochs are recorded as a tag after the run)
    params = {} if resume else config_params(wf.parser)
    with answering(uri, "before training"):
        store.ensure_experiment(uri, bundle.name)
    snapshot = str((run_dir / "eval" / "executed_train_config.json").resolve())
    tracking = mlflow_settings(workflow, uri, bundle.name, record.run_name, params, snapshot, has_guard(bundle.root))
    epochs = int(wf.parser.get_parsed_content("epochs"))
    try:
        if resume and _trainer_finished(trainer_state, epochs):
            # killed or failed after its last epoch (e.g. in the export): only the completion is left;
            # starting the trainer again would open a second, empty MLflow run
            print(f"{run_dir}: training had finished; completing the run", flush=True)
            return complete_run(bundle, run_dir, record)
        if resume:  # MONAI's handler never continues a FINISHED run: reopen it (more --epochs)
            reopen(uri, bundle.name, record.run_name)
        with store.using(uri):
            if nproc_per_node > 1:
                _torchrun(bundle, record.settings(run_dir, resume).overrides(), tracking, nproc_per_node, run_dir)
            else:
                from monai.bundle import ConfigWorkflow

                ConfigWorkflow.patch_bundle_tracking(parser=wf.parser, settings=tracking)
                run_created(wf, bundle)
        if resume:
            run = find_run(uri, bundle.name, record.run_name)
            if run is not None:
                set_tags(uri, run.info.run_id, {"resumed_with_epochs": str(epochs)})
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


def _check_schedule(parser: Any) -> None:
    """Refuse an ``epochs`` / ``val_interval`` pair that never validates (so never saves model.pt)."""
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


def _checked_last(bundle: Bundle, last: Path, network: Any) -> dict:
    """The trainer state of a run's ``last.pt``, once its network weights are known to fit ``network``.

    Checked before MLflow or the trainer start (tensors only, same layers and shapes as the
    configured ``network_def``), so a ``last.pt`` of another network fails with its name.
    """
    from sum_monai.bundle.weights import check_state_dict, load_weights_only

    content = load_weights_only(last)
    if not isinstance(content, dict) or not isinstance(content.get("network"), dict):
        raise ConfigError(f"{last}: not a training checkpoint of sum-monai (no 'network' state dict in it)")
    check_state_dict(content["network"], network.state_dict(), last, network=f"network_def ({bundle.name})")
    trainer = content.get("trainer")
    return trainer if isinstance(trainer, dict) else {}


def _trainer_finished(state: dict, epochs: int) -> bool:
    """Whether a checkpointed Ignite trainer ``state`` ran all of the configured ``epochs``."""
    length, done = state.get("epoch_length"), state.get("iteration", 0)
    if not length:
        return False
    return done // int(length) >= int(epochs)


def complete_run(bundle: Bundle, run_dir: Path, record: RunRecord) -> TrainResult:
    """Export, plot, package and register a training run whose trainer has finished.

    What the tracking server missed while it was away is sent first; a server that does not answer
    stops here with a ConfigError that says how to complete the run later (``--resume``).
    """
    model_pt = run_dir / "models" / "model.pt"
    if not model_pt.is_file():
        raise ConfigError(f"{run_dir}: training ended without models/model.pt (was the validation split empty?)")
    uri = record.tracking_uri
    resume = f"sum-monai train --bundle {record.bundle} --resume --output {run_dir}"
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

    model_ts = export_torchscript(bundle, model_pt, run_dir / "models" / "model.ts")
    history = metric_history(uri, run_id, CURVE_METRICS)
    curve = plot_learning_curve(history, run_dir / "learning_curve.png", title=f"{bundle.name} ({record.run_name})")
    dice = history.get("val_mean_dice")
    best = max(v for _, v in dice) if dice else None
    epochs = max((s for pts in history.values() for s, _ in pts), default=0)
    trained = add_weights(bundle, model_pt, model_ts, eval_metrics={"val_mean_dice": round(best, 4)} if best is not None else None)
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
