"""The MONAI Label server process: its command line, start, readiness and clean stop.

The server, its REST API and the bundle inference are MONAI Label's; this module only runs
``python -m monailabel.main start_server`` with the venv's interpreter, offline and on 127.0.0.1
by default, in its own process group so that stopping it ends its children too.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from sum_monai.deploy.monailabel.env import check_env, clean_env, venv_python
from sum_monai.errors import ConfigError


def _is_url(studies: str | Path) -> bool:
    """Whether ``studies`` is a DICOMweb server address rather than a folder."""
    return isinstance(studies, str) and studies.startswith(("http://", "https://"))


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def server_command(
    venv: str | Path,
    app: str | Path,
    studies: str | Path,
    models: Sequence[str],
    port: int = 8000,
    host: str = "127.0.0.1",
    train: bool = False,
    tracking_uri: str | None = None,
) -> list[str]:
    """The ``monailabel start_server`` command line for the prepared app.

    ``python -m monailabel.main`` is what the ``monailabel`` wrapper script execs; calling it with
    the venv's interpreter avoids the wrapper picking another ``python`` from PATH. The ``--conf``
    values keep the app offline: bundles come from ``model/`` (``zoo_source github`` never
    contacts the zoo when the folder exists), SAM2 (weights from the internet) is off.

    Args:
        venv: the MONAI Label venv.
        app: the prepared app folder.
        studies: the studies folder (MONAI Label's local datastore; created if missing) or a
            DICOMweb URL.
        models: bundle names, i.e. folder names under ``<app>/model``.
        port: TCP port.
        host: address to listen on (127.0.0.1: this machine only).
        train: offer ``POST /train/{model}`` for bundles with ``configs/train.json``.
        tracking_uri: MLflow tracking URI in which every training is tracked (the app setting
            ``tracking_uri``, read by the app's ``lib/trainers/sum_monai_bundle.py``); ``None``:
            trainings are tracked only when a request asks for it.
    """
    tracking = ["--conf", "tracking_uri", tracking_uri] if tracking_uri else []
    return [
        str(venv_python(venv)), "-m", "monailabel.main", "start_server",
        "--app", str(app), "--studies", str(studies), "--host", host, "--port", str(port),
        "--conf", "models", ",".join(models),
        "--conf", "zoo_source", "github",
        "--conf", "sam2", "false",
        "--conf", "skip_trainers", "false" if train else "true",
        "--conf", "preload", "false",
        *tracking,
    ]  # fmt: skip


class MonaiLabelServer:
    """A ``monailabel start_server`` process on 127.0.0.1 that is started, awaited and stopped.

    Args:
        venv: the MONAI Label venv.
        app: the app folder from :func:`prepare_app`.
        studies: the studies folder (created if missing) or a DICOMweb URL (``http(s)://...``).
        models: bundle names to serve (folders under ``<app>/model``).
        port: TCP port; ``None`` picks a free one.
        host: listening address.
        train: offer training (see :func:`server_command`).
        log: file the server's output goes to; ``None`` leaves it on the terminal.
        env: extra environment variables for the server (e.g. ``OMP_NUM_THREADS``).
        tracking_uri: MLflow server (or store) where every training through this server is tracked.

    Example:
        >>> with MonaiLabelServer(venv, app, studies, ["breast_us_seg_2d"]) as server:  # doctest: +SKIP
        ...     info = server.wait_ready()
    """

    def __init__(
        self,
        venv: str | Path,
        app: str | Path,
        studies: str | Path,
        models: Sequence[str],
        port: int | None = None,
        host: str = "127.0.0.1",
        train: bool = False,
        log: IO[Any] | None = None,
        env: Mapping[str, str] | None = None,
        tracking_uri: str | None = None,
    ) -> None:
        self.venv, self.app = Path(venv), Path(app)
        # a DICOMweb URL stays a string (Path would fold its "//")
        self.studies: str | Path = studies if _is_url(studies) else Path(studies).absolute()
        self.models, self.host, self.train = list(models), host, train
        self.port = port or free_port(host)
        self.log = log
        self.tracking_uri = tracking_uri
        defaults = {
            # the app unloads each bundle's `scripts` package before using the next bundle only when
            # this is true; several bundles in one app depend on it
            "MONAI_LABEL_RELOAD_APP_LIB": "true",
            # sessions (uploads kept for repeated inference) beside the app instead of ~/.cache
            "MONAI_LABEL_SESSION_PATH": str(self.app.parent / "sessions"),
        }
        if tracking_uri:  # MONAI's MLFlowHandler prefers $MLFLOW_TRACKING_URI to the URI it is given
            defaults["MLFLOW_TRACKING_URI"] = tracking_uri
        self.env = clean_env(self.venv, {**defaults, **(env or {})})
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the server, e.g. ``http://127.0.0.1:8000``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> MonaiLabelServer:
        """Start the server in its own process group (so stopping it ends its children too)."""
        check_env(self.venv)
        if isinstance(self.studies, Path):
            self.studies.mkdir(parents=True, exist_ok=True)
        cmd = server_command(
            self.venv, self.app, self.studies, self.models, self.port, self.host, self.train, self.tracking_uri
        )
        out = self.log if self.log is not None else None
        # cwd = the app's parent: MONAI Label reads settings from a `.env` file in its cwd
        self.proc = subprocess.Popen(
            cmd, cwd=self.app.parent, env=self.env, stdout=out, stderr=subprocess.STDOUT if out else None,
            start_new_session=True,
        )  # fmt: skip
        return self

    def wait_ready(self, timeout: float = 600.0) -> dict[str, Any]:
        """Wait until ``GET /info/`` answers and return its JSON.

        Raises:
            ConfigError: if the server exits first or does not answer within ``timeout`` seconds.
        """
        if self.proc is None:
            raise ConfigError("server not started; call start() first")
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise ConfigError(
                    f"MONAI Label server exited with status {self.proc.returncode} before it was ready; "
                    "see its log above (a bundle that fails to load, or the port is in use)"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/info/", timeout=10) as resp:
                    return dict(json.loads(resp.read()))
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise ConfigError(f"MONAI Label server at {self.url} not ready after {timeout:.0f} s")
            time.sleep(1.0)

    def stop(self, timeout: float = 30.0) -> int | None:
        """Stop the server: SIGINT (uvicorn's clean shutdown), then SIGTERM, then SIGKILL.

        Returns:
            the server's exit status (``None`` if it was never started).
        """
        if self.proc is None:
            return None
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        return self.proc.returncode

    def __enter__(self) -> MonaiLabelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
