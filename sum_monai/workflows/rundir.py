"""The run folder of a training run: ``runs/<bundle>/<timestamp>/`` and its ``run.json`` record.

A run folder holds ``bundle/<name>/`` (the bundle it trains, its recipe written into the configs;
see :mod:`sum_monai.bundle.recipe`), ``models/`` (checkpoints), ``eval/`` (workflow outputs) and
``run.json`` (this record: where the run came from and its non-recipe settings).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from sum_monai.bundle.locate import Bundle
from sum_monai.errors import ConfigError
from sum_monai.utils.atomic import atomic_write_text
from sum_monai.workflows.settings import RunOptions, RunSettings, recipe_part

RUNS_ROOT = Path("runs")


@dataclass
class RunRecord:
    """What ``run.json`` keeps so that ``--resume`` and ``evaluate --run`` know a run.

    The recipe is not here: it is in the configs of :meth:`run_bundle`.

    Attributes:
        bundle: the source bundle folder the run's bundle was copied from.
        bundle_version: its version.
        datalist: the datalist JSON trained on.
        run_name: MLflow run name (a resumed run continues the same MLflow run).
        tracking_uri: MLflow store.
        status: ``running``, ``finished`` or ``failed``.
        options: the run's device, precision, warm start and resources (a resume reuses them).
    """

    bundle: str
    bundle_version: str
    datalist: str
    run_name: str
    tracking_uri: str
    status: str = "running"
    mlflow_run_id: str = ""
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S"))
    options: RunOptions = field(default_factory=RunOptions)

    @staticmethod
    def bundle_dir(run_dir: Path, name: str) -> Path:
        """Where a run folder keeps the bundle it trains: ``<run_dir>/bundle/<name>``."""
        return Path(run_dir) / "bundle" / name

    def run_bundle(self, run_dir: Path) -> Bundle:
        """The run's bundle (recipe in its configs; ``models/`` once the run finished)."""
        return Bundle.find(self.bundle_dir(run_dir, Path(self.bundle).name))

    def settings(self, run_dir: Path, resume: bool = False) -> RunSettings:
        """The run's settings, as recorded."""
        return RunSettings(datalist=Path(self.datalist), run_dir=Path(run_dir), options=self.options, resume=resume)

    def save(self, run_dir: Path) -> None:
        """Write ``run_dir/run.json`` atomically."""
        atomic_write_text(run_dir / "run.json", json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, run_dir: Path) -> RunRecord:
        """Read ``run_dir/run.json`` (a run of sum-monai 0.x before run bundles is brought up to date)."""
        path = Path(run_dir) / "run.json"
        if not path.is_file():
            raise ConfigError(f"{run_dir}: not a sum-monai run folder (no run.json)")
        content = json.loads(path.read_text())
        legacy = content.pop("overrides", None)
        # options were top-level fields of run.json before they were one object
        flat = {f.name: content.pop(f.name) for f in fields(RunOptions) if f.name in content}
        options = RunOptions(**(content.pop("options", None) or flat))
        record = cls(**content, options=options)
        if legacy is not None:
            _migrate(record, Path(run_dir), legacy)
        return record


def _migrate(record: RunRecord, run_dir: Path, overrides: dict[str, Any]) -> None:
    """A run recorded with replayed overrides: write its bundle (recipe part) if it has none yet.

    Runs that finished already have ``bundle/<name>/`` (written with the recipe when they
    completed); a run killed before that gets it here, so that ``--resume`` trains the same recipe.
    """
    target = RunRecord.bundle_dir(run_dir, Path(record.bundle).name)
    if not (target / "configs" / "metadata.json").is_file():
        from sum_monai.bundle.recipe import write_recipe_bundle

        write_recipe_bundle(Bundle.find(record.bundle), target, recipe_part(overrides))
    if overrides.get("initial_weights") and not record.options.initial_weights:
        record.options = replace(record.options, initial_weights=str(overrides["initial_weights"]))


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
