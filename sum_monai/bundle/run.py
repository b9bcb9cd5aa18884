"""Run a bundle workflow (train, evaluate, inference) in this process, with overrides.

This is how every CLI command trains, evaluates and predicts: the recipe is the bundle's configs,
and the package only overrides values (data, output folders, epochs, device, ...), exactly as
``python -m monai.bundle run --config_file ... --key value`` would.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sum_monai.bundle.locate import Bundle
from sum_monai.errors import ConfigError

logger = logging.getLogger(__name__)


def forget_bundle_scripts() -> None:
    """Drop an imported ``scripts`` package, so the next bundle run imports its own ``scripts/``.

    Every bundle names its code package ``scripts``; Python would otherwise keep the first one.
    """
    for name in [m for m in sys.modules if m == "scripts" or m.startswith("scripts.")]:
        del sys.modules[name]


def device_override(device: str | None) -> dict[str, str]:
    """Config override selecting ``device`` (``cpu``, ``cuda``, ``cuda:1``); empty for automatic.

    Raises:
        ConfigError: for a CUDA device on a machine without one.
    """
    if not device or device == "auto":
        return {}
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available on this machine (use cpu or auto)")
    return {"device": f"$torch.device('{dev}')"}


def create_workflow(
    bundle: Bundle,
    workflow: str,
    overrides: Mapping[str, Any] | None = None,
    tracking: dict | None = None,
) -> Any:
    """Build (not run) the ``ConfigWorkflow`` of ``workflow`` with ``overrides``.

    Args:
        bundle: the bundle.
        workflow: ``train``, ``evaluate``, ``inference`` or ``multi_gpu_train``.
        overrides: config ids and values, e.g. ``{"epochs": 5, "data_list_file_path": "..."}``.
        tracking: MONAI tracking settings (see :mod:`sum_monai.tracking.settings`), or ``None``.
    """
    from monai.bundle import ConfigWorkflow

    forget_bundle_scripts()
    # as ConfigWorkflow.run() does, but already for initialize(): the bundle's scripts/ must import
    root = str(bundle.root)
    if root in sys.path:
        sys.path.remove(root)
    sys.path.insert(1, root)
    workflow_type = "train" if "train" in workflow else "infer"
    logging_file = bundle.root / "configs" / "logging.conf"
    return ConfigWorkflow(
        config_file=[str(p) for p in bundle.configs(workflow)],
        meta_file=str(bundle.config("metadata.json")),
        logging_file=str(logging_file) if logging_file.is_file() else False,
        workflow_type=workflow_type,
        tracking=tracking,
        bundle_root=str(bundle.root),
        **dict(overrides or {}),
    )


def run_workflow(
    bundle: Bundle,
    workflow: str,
    overrides: Mapping[str, Any] | None = None,
    tracking: dict | None = None,
) -> Any:
    """Initialise, run and finalise a bundle workflow; return the finished ``ConfigWorkflow``."""
    wf = create_workflow(bundle, workflow, overrides, tracking)
    wf.initialize()
    try:
        wf.run()
    finally:
        wf.finalize()
    return wf


def resolved(wf: Any, key: str) -> Any:
    """The parsed value of ``key`` in a workflow's config (e.g. ``"output_dir"``)."""
    return wf.parser.get_parsed_content(key)


def as_override_path(path: str | Path) -> str:
    """Absolute path string for a config override (bundle configs run with their own cwd)."""
    return str(Path(path).resolve())
