"""The run folder of a training run: ``runs/<bundle>/<timestamp>/`` and its ``run.json`` record."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sum_monai.errors import ConfigError
from sum_monai.utils.atomic import atomic_write_text

RUNS_ROOT = Path("runs")


@dataclass
class RunRecord:
    """What ``run.json`` keeps so that ``--resume`` and ``evaluate --run`` know a run.

    Attributes:
        bundle: bundle folder the run trained.
        bundle_version: its version.
        datalist: the datalist JSON trained on.
        run_name: MLflow run name (a resumed run continues the same MLflow run).
        tracking_uri: MLflow store.
        overrides: config overrides used (data paths, epochs, ...).
        status: ``running``, ``finished`` or ``failed``.
    """

    bundle: str
    bundle_version: str
    datalist: str
    run_name: str
    tracking_uri: str
    overrides: dict[str, Any] = field(default_factory=dict)
    status: str = "running"
    mlflow_run_id: str = ""
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S"))

    def save(self, run_dir: Path) -> None:
        """Write ``run_dir/run.json`` atomically."""
        atomic_write_text(run_dir / "run.json", json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, run_dir: Path) -> RunRecord:
        """Read ``run_dir/run.json``."""
        path = Path(run_dir) / "run.json"
        if not path.is_file():
            raise ConfigError(f"{run_dir}: not a sum-monai run folder (no run.json)")
        return cls(**json.loads(path.read_text()))


def new_run_dir(bundle_name: str, root: Path = RUNS_ROOT) -> Path:
    """A fresh ``runs/<bundle>/<YYYYmmdd-HHMMSS>`` folder (suffix added if that second is taken)."""
    base = root / bundle_name / time.strftime("%Y%m%d-%H%M%S")
    path, i = base, 1
    while path.exists():
        path = base.with_name(f"{base.name}-{i}")
        i += 1
    path.mkdir(parents=True)
    return path


def latest_run_dir(bundle_name: str, root: Path = RUNS_ROOT) -> Path:
    """The newest run folder of ``bundle_name`` that has a ``run.json``."""
    runs = sorted(p.parent for p in (root / bundle_name).glob("*/run.json"))
    if not runs:
        raise ConfigError(f"no earlier run of {bundle_name} under {root / bundle_name} to resume; pass --output RUN_DIR")
    return runs[-1]
