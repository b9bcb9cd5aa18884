"""Where MLflow runs live: a SQLite file by default, any tracking URI by setting."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

#: Default store: ``./mlruns.db`` (artifacts in ``./mlruns`` beside it, as MONAI's handler does).
DEFAULT_DB = "mlruns.db"


def tracking_uri(uri: str | None = None) -> str:
    """Resolve the MLflow tracking URI.

    Order: the explicit ``uri`` (``--tracking-uri``), then ``MLFLOW_TRACKING_URI``, then a SQLite
    file ``./mlruns.db`` in the current folder.

    Example:
        >>> tracking_uri("sqlite:////tmp/x.db")
        'sqlite:////tmp/x.db'
    """
    if uri:
        return uri
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return "sqlite:///" + str(Path(DEFAULT_DB).resolve())


def artifact_location(uri: str) -> str | None:
    """Artifact folder for new experiments: ``mlruns/`` beside a SQLite file, else MLflow's default."""
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        return (db.parent / "mlruns").resolve().as_uri()
    return None


def ui_command(uri: str) -> str:
    """The command that opens the MLflow UI on this store (a tracking server is its own UI)."""
    if uri.startswith(("http://", "https://")):
        return f"open {uri} in a browser (the tracking server's UI)"
    return f"mlflow ui --backend-store-uri {uri} --port 5000"


@contextlib.contextmanager
def _first_use_lock(uri: str) -> Iterator[None]:
    """Serialise the first use of a SQLite store across processes.

    MLflow creates and migrates a new SQLite database on first contact; two trainings started at
    once on a fresh ``mlruns.db`` race in that migration ("duplicate column name: step").
    """
    if not uri.startswith("sqlite:///"):
        yield
        return
    from filelock import FileLock  # a torch dependency

    db = Path(uri[len("sqlite:///") :])
    db.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(db) + ".lock"):
        yield


def ensure_experiment(uri: str, name: str) -> str:
    """Create the experiment ``name`` if needed (artifacts beside the SQLite file); return its id.

    Safe to call from several processes at once on a new SQLite store (see :func:`_first_use_lock`).
    """
    import mlflow

    with _first_use_lock(uri):
        client = mlflow.MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        return client.create_experiment(name, artifact_location=artifact_location(uri))


@contextlib.contextmanager
def using(uri: str) -> Iterator[str]:
    """Make ``uri`` the store of everything MLflow does inside the block, then restore.

    MONAI's ``MLFlowHandler`` prefers ``$MLFLOW_TRACKING_URI`` to the URI it is given, and MLflow's
    fluent API keeps a process-wide URI; both are pointed at ``uri`` here so that a run, its
    artifacts and its registered model always land in the same store.
    """
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    try:
        yield uri
    finally:
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before
        mlflow.set_tracking_uri(before or "")
