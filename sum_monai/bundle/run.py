"""Run a bundle workflow (train, evaluate, inference) in this process, with overrides.

This is how every CLI command trains, evaluates and predicts: the recipe is the bundle's configs,
and the package only overrides values (data, output folders, epochs, device, ...), exactly as
``python -m monai.bundle run --config_file ... --key value`` would.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from sum_monai.bundle.locate import Bundle
from sum_monai.errors import ConfigError

logger = logging.getLogger(__name__)


def _bundle_script_modules() -> list[str]:
    return [m for m in list(sys.modules) if m == "scripts" or m.startswith("scripts.")]  # other threads import too


#: Bundle roots whose scope is open, innermost last (a parse inside a run must not close the run's scope).
_OPEN: list[str] = []


@contextlib.contextmanager
def bundle_imports(root: str | Path) -> Iterator[None]:
    """Make ``import scripts`` find ``root/scripts`` for the duration of the block, and only then.

    Every bundle names its code package ``scripts``; inside the block the bundle root leads
    ``sys.path`` (as ``monai.bundle run`` puts it there) and any other bundle's ``scripts`` is set
    aside; afterwards ``sys.path`` and ``sys.modules`` are as they were, so running one bundle never
    changes what the next one (or the caller) imports. Objects built inside keep their modules. A
    block for the bundle whose block is already open (a config parsed while its workflow runs)
    changes nothing, so the modules the run imported stay the ones it uses.
    """
    root = str(root)
    if _OPEN and _OPEN[-1] == root:
        yield
        return
    saved_path = list(sys.path)
    saved = {m: sys.modules.pop(m) for m in _bundle_script_modules()}
    sys.path.insert(1, root)
    _OPEN.append(root)
    try:
        yield
    finally:
        _OPEN.pop()
        for name in _bundle_script_modules():
            sys.modules.pop(name, None)
        sys.path[:] = saved_path
        sys.modules.update(saved)


@functools.cache
def scoped_parser_class() -> type:
    """MONAI's ``ConfigParser``, resolving ids inside :func:`bundle_imports` of its ``bundle_root``.

    Made on first use so that importing this module does not import MONAI (``--help`` stays fast).
    """
    from monai.bundle import ConfigParser

    class ScopedConfigParser(ConfigParser):
        bundle_root: str = ""

        def parse(self, reset: bool = True) -> None:
            with bundle_imports(self.bundle_root):
                super().parse(reset)

        def get_parsed_content(self, id: str = "", **kwargs: Any) -> Any:
            with bundle_imports(self.bundle_root):
                return super().get_parsed_content(id, **kwargs)

    return ScopedConfigParser


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

    workflow_type = "train" if "train" in workflow else "infer"
    logging_file = bundle.root / "configs" / "logging.conf"
    wf = ConfigWorkflow(
        config_file=[str(p) for p in bundle.configs(workflow)],
        meta_file=str(bundle.config("metadata.json")),
        logging_file=str(logging_file) if logging_file.is_file() else False,
        workflow_type=workflow_type,
        tracking=tracking,
        bundle_root=str(bundle.root),
        **dict(overrides or {}),
    )
    # ConfigWorkflow builds its own parser; its class is swapped (same state) so that reading a
    # value such as ``preprocessing`` imports this bundle's scripts/ and leaves sys.path as it was
    wf.parser.__class__ = scoped_parser_class()
    wf.parser.bundle_root = str(bundle.root)
    return wf


def run_workflow(
    bundle: Bundle,
    workflow: str,
    overrides: Mapping[str, Any] | None = None,
    tracking: dict | None = None,
) -> Any:
    """Initialise, run and finalise a bundle workflow; return the finished ``ConfigWorkflow``."""
    wf = create_workflow(bundle, workflow, overrides, tracking)
    return run_created(wf, bundle)


def run_created(wf: Any, bundle: Bundle) -> Any:
    """Initialise, run and finalise a workflow made by :func:`create_workflow`, its scripts importable."""
    with bundle_imports(bundle.root):
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
