"""Find bundles and their config files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sum_monai.errors import ConfigError

#: The bundles shipped in this repository, beside the package.
REPO_BUNDLES = Path(__file__).resolve().parents[2] / "bundles"

#: Config files run for each workflow, in override order (MONAI model-zoo conventions).
WORKFLOW_CONFIGS: dict[str, tuple[str, ...]] = {
    "train": ("train.json",),
    "evaluate": ("train.json", "evaluate.json"),
    "inference": ("inference.json",),
    "multi_gpu_train": ("train.json", "multi_gpu_train.json"),
}


@dataclass(frozen=True)
class Bundle:
    """A MONAI bundle folder (``configs/``, ``models/``, ``docs/``, ``scripts/``).

    Example:
        >>> b = Bundle.find("breast_us_seg_2d")  # doctest: +SKIP
        >>> b.configs("evaluate")  # doctest: +SKIP
        [PosixPath('.../configs/train.json'), PosixPath('.../configs/evaluate.json')]
    """

    root: Path

    @classmethod
    def find(cls, name_or_path: str | Path) -> Bundle:
        """Resolve a bundle folder path, or the name of a bundle shipped in ``bundles/``."""
        path = Path(name_or_path)
        if not (path / "configs").is_dir() and (REPO_BUNDLES / str(name_or_path) / "configs").is_dir():
            path = REPO_BUNDLES / str(name_or_path)
        if not (path / "configs" / "metadata.json").is_file():
            raise ConfigError(f"{path}: not a MONAI bundle (no configs/metadata.json)")
        return cls(path.resolve())

    @property
    def name(self) -> str:
        """Folder name, e.g. ``breast_us_seg_2d`` (also the MLflow experiment and model name)."""
        return self.root.name

    @property
    def metadata(self) -> dict:
        """The parsed ``configs/metadata.json``."""
        return json.loads((self.root / "configs" / "metadata.json").read_text())

    @property
    def version(self) -> str:
        """Bundle version from the metadata."""
        return str(self.metadata["version"])

    def config(self, filename: str) -> Path:
        """Path of ``configs/<filename>``, which must exist."""
        path = self.root / "configs" / filename
        if not path.is_file():
            raise ConfigError(f"{self.root}: bundle has no configs/{filename}")
        return path

    def configs(self, workflow: str) -> list[Path]:
        """Config files of ``workflow`` (``train``, ``evaluate``, ``inference``, ``multi_gpu_train``)."""
        if workflow not in WORKFLOW_CONFIGS:
            raise ConfigError(f"unknown workflow {workflow!r}; one of {sorted(WORKFLOW_CONFIGS)}")
        return [self.config(f) for f in WORKFLOW_CONFIGS[workflow]]
