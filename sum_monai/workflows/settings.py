"""What a training run needs that is not recipe: data, folders, device, precision, resume, warm start, resources.

The recipe is written into the run's bundle folder (:mod:`sum_monai.bundle.recipe`); these
settings describe one run on one machine and are handed to the bundle's workflow as overrides
at run time only, so they never reach a trained bundle's configs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from sum_monai.bundle.run import device_override
from sum_monai.errors import ConfigError

#: The bundle config id each setting fills (one place: the guard against ``--set`` uses it too).
CONFIG_IDS: dict[str, str] = {
    "datalist": "data_list_file_path",
    "ckpt_dir": "ckpt_dir",
    "output_dir": "output_dir",
    "device": "device",
    "precision": "precision",
    "resume": "resume",
    "initial_weights": "initial_weights",
    "num_workers": "num_workers",
    "cache_rate": "cache_rate",
}
#: Config ids that are derived from the settings above and so cannot be recipe either.
DERIVED_IDS = ("bundle_root", "dataset_dir")
#: The command-line option that sets each config id, for the error message.
OPTIONS = {
    "data_list_file_path": "--data", "ckpt_dir": "--output", "output_dir": "--output", "device": "--device",
    "precision": "--precision", "resume": "--resume", "initial_weights": "--init", "num_workers": "--workers", "cache_rate": "--cache-rate",
    "bundle_root": "--bundle", "dataset_dir": "--data",
}  # fmt: skip


@dataclass(frozen=True)
class RunOptions:
    """The machine-side choices of a run, recorded in ``run.json`` and reused when it resumes.

    ``None`` everywhere means "the bundle's own value" (``device`` / ``precision`` auto).

    Attributes:
        device: ``cpu``, ``cuda``, ``cuda:1``.
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16`` (the bundle's ``precision``; the device
            decides what runs, see ``scripts/precision.py``).
        initial_weights: warm start from these weights (absolute path).
        num_workers: data-loader workers.
        cache_rate: share of the training set cached in memory.
    """

    device: str | None = None
    precision: str | None = None
    initial_weights: str | None = None
    num_workers: int | None = None
    cache_rate: float | None = None

    @classmethod
    def given(
        cls, device: str | None = None, precision: str | None = None, initial_weights: str | Path | None = None,
        num_workers: int | None = None, cache_rate: float | None = None,
    ) -> RunOptions:
        """Options as command options give them (``--device auto``, the CLI default, is the bundle's
        choice and never replaces a recorded device; ``--precision`` has no default, so an explicit
        ``auto`` is kept; paths made absolute)."""
        return cls(
            device=None if device in (None, "auto") else device,
            precision=precision,  # "auto" kept: given with --resume it replaces a recorded bf16
            initial_weights=_abs(Path(initial_weights)) if initial_weights else None,
            num_workers=num_workers, cache_rate=cache_rate,
        )  # fmt: skip

    def updated(self, other: RunOptions) -> RunOptions:
        """These options with those set in ``other`` replacing them (``--resume`` with new options)."""
        return replace(self, **{f.name: v for f in fields(other) if (v := getattr(other, f.name)) is not None})

    def overrides(self) -> dict[str, Any]:
        """The options as bundle config overrides."""
        out: dict[str, Any] = dict(device_override(self.device))
        if self.precision is not None:
            out["precision"] = self.precision
        if self.initial_weights is not None:
            out["initial_weights"] = self.initial_weights
        if self.num_workers is not None:
            out["num_workers"] = int(self.num_workers)
        if self.cache_rate is not None:
            out["cache_rate"] = float(self.cache_rate)
        return out


@dataclass(frozen=True)
class RunSettings:
    """One training run's non-recipe settings.

    Attributes:
        datalist: the datalist JSON the run trains on.
        run_dir: the run folder (checkpoints in ``models/``, workflow outputs in ``eval/``).
        options: device, precision, warm start and resources.
        resume: continue from ``models/last.pt``.
    """

    datalist: Path
    run_dir: Path
    options: RunOptions = field(default_factory=RunOptions)
    resume: bool = False

    def overrides(self) -> dict[str, Any]:
        """The settings as bundle config overrides (absolute paths: bundles run with their own cwd)."""
        return {
            "data_list_file_path": _abs(self.datalist),
            "ckpt_dir": _abs(self.run_dir / "models"),
            "output_dir": _abs(self.run_dir / "eval"),
            "resume": self.resume,
            **self.options.overrides(),
        }


def _is_setting(key: str) -> bool:
    return key.split("#")[0] in {*CONFIG_IDS.values(), *DERIVED_IDS}


def recipe_part(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe ids of a mixed mapping of overrides (a run recorded before run bundles existed)."""
    return {k: v for k, v in overrides.items() if not _is_setting(k)}


def check_recipe(recipe: Mapping[str, Any]) -> None:
    """Refuse recipe ids that are run settings (they would be written into the trained bundle).

    Raises:
        ConfigError: naming the id and the option that sets it.
    """
    bad = [k for k in recipe if _is_setting(k)]
    if bad:
        hints = ", ".join(f"{k} ({OPTIONS.get(k.split('#')[0], 'a command option')})" for k in bad)
        raise ConfigError(f"not recipe but run settings, set by their own options: {hints}")


def _abs(path: Path) -> str:
    return str(Path(path).resolve())
