"""A tracking server that does not answer: fail fast before a run, deliver late after it.

During a run the bundle's ``scripts.tracking.GuardedMLFlowHandler`` keeps what the server missed
in ``<output_dir>/mlflow_unsent_*.json``; this module sends those files when the server answers
again (:func:`send_pending`, called when a training run is completed, also by ``--resume``) and
turns "the server does not answer" into one clear :class:`~sum_monai.errors.ConfigError` instead
of four minutes of MLflow retries and a traceback (:func:`answering`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sum_monai.bundle.bundle_scripts.tracking import epoch_ranges, is_unreachable, quick_requests, send_unsent
from sum_monai.errors import ConfigError
from sum_monai.tracking.settings import UNSENT_GLOB

__all__ = ["answering", "pending_files", "pending_summary", "send_pending"]


@contextlib.contextmanager
def answering(uri: str, what: str, timeout: int | None = 30) -> Iterator[None]:
    """Run MLflow calls with short retries; an unreachable server becomes a ConfigError naming ``what``.

    ``timeout``: seconds per HTTP request (``None``: MLflow's own, for uploads of large artifacts).

    Example:
        >>> with answering("http://127.0.0.1:5000", "before training"):  # doctest: +SKIP
        ...     store.ensure_experiment(uri, "breast_us_seg_2d")
    """
    try:
        with quick_requests(timeout=timeout):
            yield
    except ConfigError:
        raise
    except Exception as err:
        if not is_unreachable(err):
            raise
        raise ConfigError(
            f"MLflow tracking server {uri} does not answer ({what}): {str(err).splitlines()[0][:200]}; start it, "
            "or pass another --tracking-uri (e.g. sqlite:///mlruns.db for a local store)"
        ) from err


def pending_files(folder: str | Path) -> list[Path]:
    """The ``mlflow_unsent_*.json`` files a guarded handler left in ``folder`` (a workflow's ``output_dir``)."""
    folder = Path(folder)
    return sorted(folder.glob(UNSENT_GLOB)) if folder.is_dir() else []


def pending_summary(files: list[Path]) -> str:
    """``"train_loss, val_mean_dice of epochs 2-4"``: what the files hold, for messages."""
    keys: set[str] = set()
    steps: set[int] = set()
    for path in files:
        with contextlib.suppress(OSError, ValueError):
            content = json.loads(path.read_text())
            keys.update(m["key"] for m in content.get("metrics", []))
            steps.update(int(m["step"]) for m in content.get("metrics", []))
    if not keys:
        return "the end of the run"
    return f"{', '.join(sorted(keys))} of epochs {epoch_ranges(steps)}"


def send_pending(folder: str | Path, uri: str, resume_hint: str) -> list[dict[str, Any]]:
    """Send every unsent file in ``folder`` to ``uri`` (each to its own run); remove each file sent.

    Args:
        folder: the workflow's ``output_dir``.
        uri: the tracking URI the run uses.
        resume_hint: what the user runs once the server answers again, for the error message.

    Returns:
        what :func:`scripts.tracking.send_unsent` reports per file (run id, late epochs, counts).

    Raises:
        ConfigError: the server still does not answer; the files stay for the next try.
    """
    files = pending_files(folder)
    sent: list[dict[str, Any]] = []
    for path in files:
        try:
            sent.append(send_unsent(str(path), tracking_uri=uri))
        except Exception as err:
            if not is_unreachable(err):
                raise
            left = pending_files(folder)
            raise ConfigError(
                f"MLflow tracking server {uri} does not answer, so the run cannot be completed there: "
                f"{pending_summary(left)} are only in the training log and in {', '.join(str(p) for p in left)}. "
                f"Nothing is lost; when the server answers again, run `{resume_hint}` to send them and complete the run"
            ) from err
    return sent
