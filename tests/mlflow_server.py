"""A real ``mlflow server`` for tests, and an Ignite handler that takes it away mid-training.

:class:`MlflowServer` runs ``mlflow server`` as a group would: a SQLite backend store, artifacts
served by the server itself (``--serve-artifacts --artifacts-destination``), on 127.0.0.1 only, on
a free port; it can be stopped and started again on the same port and store.

:class:`Outage` is attached to a trainer through the tracking settings (the test adds it beside
the MLflow handlers): it stops the server after one epoch and starts it again after another, at
exact epochs, so the test does not depend on timing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

#: The server the :class:`Outage` handler acts on (set by the test).
SERVER: MlflowServer | None = None
#: What :class:`Outage` did: ``(action, epoch, time.time() when done)``.
EVENTS: list[tuple[str, int, float]] = []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MlflowServer:
    """``mlflow server`` on 127.0.0.1 with a SQLite store and served artifacts under ``root``."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = Path(root)
        self.port = port or free_port()
        self.db = self.root / "mlflow.db"
        self.artifacts = self.root / "artifacts"
        self.log = self.root / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts: list[float] = []  # seconds each start took until /health answered

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
        return [
            mlflow, "server", "--backend-store-uri", f"sqlite:///{self.db}", "--serve-artifacts",
            "--artifacts-destination", str(self.artifacts), "--host", "127.0.0.1", "--port", str(self.port),
            "--workers", "1",
        ]  # fmt: skip

    def start(self, timeout: float = 1200.0) -> MlflowServer:
        """Start the server (its own process group) and wait until ``/health`` answers."""
        self.root.mkdir(parents=True, exist_ok=True)
        # the job runner (huey consumers for GenAI jobs) is not needed for tracking and slows the start
        env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
        env.pop("MLFLOW_TRACKING_URI", None)
        start = time.monotonic()
        with self.log.open("a") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)  # fmt: skip
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            if self.answers():
                break
            if time.monotonic() - start > timeout:
                self.stop()
                raise RuntimeError(f"mlflow server not ready after {timeout:.0f} s:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.3)
        self.starts.append(time.monotonic() - start)
        return self

    def stop(self) -> None:
        """Stop the whole process group (the CLI and its uvicorn worker): SIGTERM, then SIGKILL."""
        if self.proc is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(20)
        with contextlib.suppress(ProcessLookupError):  # a worker that outlived its parent
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=5) as resp:
                return resp.status == 200
        except (OSError, urllib.error.URLError):
            return False


class Outage:
    """Stop :data:`SERVER` after epoch ``stop_after``; start it again after epoch ``back_after``.

    Attached to the trainer after the MLflow handlers, so the metrics of ``stop_after`` are sent
    before the server goes, and the checkpoint of every epoch is written after it (as always).
    """

    def __init__(self, stop_after: int, back_after: int | None = None) -> None:
        self.stop_after, self.back_after = stop_after, back_after
        self.epochs_down: list[int] = []

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Any) -> None:
        assert SERVER is not None
        epoch = engine.state.epoch
        if epoch == self.stop_after:
            SERVER.stop()
            EVENTS.append(("stop", epoch, time.time()))
        elif self.back_after is not None and epoch == self.back_after:
            SERVER.start()
            EVENTS.append(("start", epoch, time.time()))
