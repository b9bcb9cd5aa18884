"""Checkpoints written atomically under fixed names (``model.pt``, ``last.pt``).

Why not ``monai.handlers.CheckpointSaver``: it saves with ``atomic=False`` and removes the previous
file before writing the next, so a SIGKILL at the wrong moment leaves a corrupt or missing
``model.pt``. This handler keeps its role but saves through Ignite's ``Checkpoint`` and atomic
``DiskSaver`` (temporary file + ``os.replace``), and never deletes the file it replaces.

A process killed while writing leaves its temporary file behind (Ignite names it ``tmp*``, and
nothing ever removes it: a few MB per kill). Here the temporary file is named after the checkpoint
(``.last.pt.tmp-*``) and the saver removes those of earlier, killed writers when it starts (one
trainer per run folder: ``sum-monai train`` holds a lock on it).

This file is synced from ``sum_monai/bundle/bundle_scripts/checkpoint.py``; edit it there.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver


class _FixedNameDiskSaver(DiskSaver):
    """Atomic DiskSaver that always writes one file name, never removes it, and cleans up after kills."""

    def __init__(self, dirname: str, filename: str) -> None:
        super().__init__(dirname, atomic=True, create_dir=True, require_empty=False)
        self.filename = filename
        self.temp_prefix = f".{filename}.tmp-"
        for stale in Path(dirname).glob(f"{self.temp_prefix}*"):  # left by a killed write
            with contextlib.suppress(OSError):
                stale.unlink()

    def _save_func(self, checkpoint: Mapping, path: Path, func: Callable) -> None:
        """Ignite's atomic write, with a temporary file named after the checkpoint."""
        fd, tmp = tempfile.mkstemp(prefix=self.temp_prefix, dir=self.dirname)
        try:
            with os.fdopen(fd, "wb") as f:
                func(checkpoint, f, **self.kwargs)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise
        os.chmod(path, os.stat(path).st_mode | stat.S_IRGRP | stat.S_IROTH)

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        super().__call__(checkpoint, self.filename, metadata)

    def remove(self, filename: str) -> None:
        """Keep the file: the next save replaces it atomically."""


class AtomicCheckpointSaver:
    """Save ``save_dict`` atomically to ``save_dir/filename`` at epoch ends.

    Attach it to the evaluator with ``key_metric_name`` to keep the best model (the file is
    replaced only when the metric improves), or to the trainer without it to keep the latest
    training state for ``--resume``. Its own state (the best score so far) can be saved in the
    latest checkpoint, so a resumed run keeps comparing against the true best.

    Args:
        save_dir: folder of the checkpoint file (created if missing).
        save_dict: objects with ``state_dict()`` to save, e.g. ``{"model": network}``. A single
            entry is saved as its bare state dict (the MONAI bundle ``model.pt`` convention).
        filename: the fixed file name, e.g. ``"model.pt"``.
        key_metric_name: metric in ``engine.state.metrics`` deciding what is "best"; ``None``
            saves every ``save_interval`` epochs.
        key_metric_greater_or_equal: also replace the file when the metric ties the best.
        save_interval: epochs between saves (only without ``key_metric_name``).

    Example:
        >>> saver = AtomicCheckpointSaver("models", {"model": net}, "model.pt", "val_mean_dice")  # doctest: +SKIP
        >>> saver.attach(evaluator)  # doctest: +SKIP
    """

    def __init__(
        self,
        save_dir: str,
        save_dict: dict[str, Any],
        filename: str,
        key_metric_name: str | None = None,
        key_metric_greater_or_equal: bool = False,
        save_interval: int = 1,
    ) -> None:
        self.save_interval = 1 if key_metric_name else max(1, int(save_interval))
        self.checkpoint = Checkpoint(
            to_save=save_dict,
            save_handler=_FixedNameDiskSaver(save_dir, filename),
            score_function=Checkpoint.get_default_score_fn(key_metric_name) if key_metric_name else None,
            score_name=key_metric_name,
            n_saved=1,
            greater_or_equal=key_metric_greater_or_equal,
        )

    def attach(self, engine: Engine) -> None:
        """Save at the end of every ``save_interval``-th epoch of ``engine``."""
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_interval), self.checkpoint)

    def state_dict(self) -> dict[str, Any]:
        """The saver's memory of what it saved (for the best model: the best score)."""
        return self.checkpoint.state_dict()

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Restore :meth:`state_dict` (done by ``CheckpointLoader`` when resuming)."""
        self.checkpoint.load_state_dict(state_dict)
