"""What a training run needs that is not recipe: data, folders, device, resume, warm start, resources.

The recipe is written into the run's bundle folder (:mod:`sum_monai.bundle.recipe`); these
settings describe one run on one machine and are handed to the bundle's workflow as overrides
at run time only, so they never reach a trained bundle's configs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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
    "resume": "--resume", "initial_weights": "--init", "num_workers": "--workers", "cache_rate": "--cache-rate",
    "bundle_root": "--bundle", "dataset_dir": "--data",
}  # fmt: skip


@dataclass(frozen=True)
class RunSettings:
    """One training run's non-recipe settings.

    Attributes:
        datalist: the datalist JSON the run trains on.
        run_dir: the run folder (checkpoints in ``models/``, workflow outputs in ``eval/``).
        device: ``None`` or ``auto`` for the bundle's automatic choice, else ``cpu``, ``cuda``, ``cuda:1``.
        resume: continue from ``models/last.pt``.
        initial_weights: warm start from these weights (``None``: none).
        num_workers: data-loader workers (``None``: the bundle's default).
        cache_rate: share of the training set cached in memory (``None``: the bundle's default).
    """

    datalist: Path
    run_dir: Path
    device: str | None = None
    resume: bool = False
    initial_weights: Path | None = None
    num_workers: int | None = None
    cache_rate: float | None = None

    def overrides(self) -> dict[str, Any]:
        """The settings as bundle config overrides (absolute paths: bundles run with their own cwd)."""
        out: dict[str, Any] = {
            "data_list_file_path": _abs(self.datalist),
            "ckpt_dir": _abs(self.run_dir / "models"),
            "output_dir": _abs(self.run_dir / "eval"),
            "resume": self.resume,
        }
        out.update(device_override(self.device))
        if self.initial_weights is not None:
            out["initial_weights"] = _abs(self.initial_weights)
        if self.num_workers is not None:
            out["num_workers"] = int(self.num_workers)
        if self.cache_rate is not None:
            out["cache_rate"] = float(self.cache_rate)
        return out


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
