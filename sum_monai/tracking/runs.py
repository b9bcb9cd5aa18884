"""Reading and completing MLflow runs: metrics history, artifacts, the registered model."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def _client(uri: str) -> Any:
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri)


def find_run(uri: str, experiment: str, run_name: str) -> Any | None:
    """The newest run called ``run_name`` in ``experiment``, or ``None``."""
    client = _client(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs = client.search_runs(
        [exp.experiment_id], filter_string=f"attributes.run_name = '{run_name}'", order_by=["start_time DESC"]
    )
    return runs[0] if runs else None


def mark_failed(uri: str, experiment: str, run_name: str) -> None:
    """End the run called ``run_name`` as FAILED if it is still RUNNING (an interrupted start).

    MONAI's ``MLFlowHandler`` closes a run only when its engine completes, so a training that
    raised or was interrupted would otherwise stay RUNNING for ever. Never raises: this runs
    while another error is on its way to the user.
    """
    try:
        run = find_run(uri, experiment, run_name)
        if run is not None and run.info.status == "RUNNING":
            _client(uri).set_terminated(run.info.run_id, "FAILED")
    except Exception:  # the store itself may be what failed
        logger.debug("could not mark MLflow run %s failed", run_name, exc_info=True)


def reopen(uri: str, experiment: str, run_name: str) -> None:
    """Set a FINISHED or FAILED run called ``run_name`` back to RUNNING, before a resume.

    MONAI's ``MLFlowHandler`` continues a run of its name unless it is FINISHED, in which case it
    opens a second run with the same name; a resumed training (more ``--epochs``) must continue
    the same run instead.
    """
    run = find_run(uri, experiment, run_name)
    if run is not None and run.info.status != "RUNNING":
        _client(uri).update_run(run.info.run_id, status="RUNNING")


def metric_history(uri: str, run_id: str, keys: Iterable[str]) -> dict[str, list[tuple[int, float]]]:
    """``{metric: [(step, value), ...]}`` sorted by step, for the metrics of ``keys`` the run has."""
    client = _client(uri)
    out: dict[str, list[tuple[int, float]]] = {}
    for key in keys:
        hist = client.get_metric_history(run_id, key)
        if hist:
            by_step = {m.step: m.value for m in sorted(hist, key=lambda m: m.timestamp)}
            out[key] = sorted(by_step.items())
    return out


def log_artifacts(uri: str, run_id: str, paths: Sequence[Path], artifact_path: str | None = None) -> None:
    """Log files (or whole folders) as artifacts of a run, finished or not."""
    client = _client(uri)
    for path in paths:
        path = Path(path)
        if path.is_dir():
            client.log_artifacts(run_id, str(path), artifact_path=artifact_path)
        elif path.is_file():
            client.log_artifact(run_id, str(path), artifact_path=artifact_path)


def set_tags(uri: str, run_id: str, tags: dict[str, str]) -> None:
    """Set tags on a run."""
    client = _client(uri)
    for key, value in tags.items():
        client.set_tag(run_id, key, value)


def register_torchscript(
    uri: str,
    run_id: str,
    ts_path: Path,
    model_name: str,
    bundle_version: str,
    input_example: Any | None = None,
) -> Any:
    """Log a TorchScript model in ``run_id`` and register it as a new version of ``model_name``.

    TorchScript needs no Python class to load, so the registered model loads with
    ``mlflow.pytorch.load_model("models:/<name>/<version>")`` anywhere torch is installed.

    Args:
        uri: tracking URI.
        run_id: the training run the model comes from.
        ts_path: the exported ``model.ts``.
        model_name: registered model name (one per bundle: the bundle name).
        bundle_version: bundle version, set as the tag ``bundle_version`` of the model version.
        input_example: a numpy array the model accepts, stored with the model (signature).

    Returns:
        the ``ModelVersion``.
    """
    import mlflow
    import torch

    from sum_monai.tracking.store import using

    model = torch.jit.load(str(ts_path), map_location="cpu")
    with using(uri), mlflow.start_run(run_id=run_id):
        info = mlflow.pytorch.log_model(
            pytorch_model=model,
            name="model",
            registered_model_name=model_name,
            serialization_format="pickle",
            input_example=input_example,
        )
    client = _client(uri)
    version = info.registered_model_version
    client.set_model_version_tag(model_name, str(version), "bundle_version", bundle_version)
    client.set_model_version_tag(model_name, str(version), "format", "torchscript")
    return client.get_model_version(model_name, str(version))
