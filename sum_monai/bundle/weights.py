"""Check a bundle checkpoint before anything uses it: tensors only, and the right tensors.

A ``model.pt`` is only ever opened with ``torch.load(weights_only=True)``: PyTorch's restricted
unpickler, which rebuilds tensors and plain containers but runs no code, so a file carrying a
pickled ``nn.Module`` (or anything else needing arbitrary classes) is refused instead of
executed. The state dict is then compared key by key and shape by shape with the bundle's
``network_def``, so a checkpoint of another bundle or of a differently configured network fails
with the layers at fault named, before prediction or export starts.

Accepted layouts (the ones MONAI's ``CheckpointLoader`` with ``load_dict={"model": net}`` reads):

- a bare state dict (``torch.save(net.state_dict(), "model.pt")``, the MONAI bundle convention);
- a dict with the state dict under ``"model"`` (an Ignite ``Checkpoint`` of several objects,
  e.g. a training run's ``last.pt``).

Call :func:`load_checked_state_dict` wherever a checkpoint enters the package: prediction and
export do; ``sum-monai train --resume`` and ``sum-monai evaluate`` should as well.

Example:
    >>> from sum_monai.bundle.locate import Bundle
    >>> state = load_checked_state_dict(Bundle.find("breast_us_seg_2d"), "runs/x/models/model.pt")  # doctest: +SKIP
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sum_monai.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from sum_monai.bundle.locate import Bundle

__all__ = [
    "HOW_TO_SAVE",
    "check_state_dict",
    "load_checked_state_dict",
    "load_weights_only",
    "network_from_bundle",
]

#: What a user should do instead of saving a whole model.
HOW_TO_SAVE = 'save the weights only: torch.save(model.state_dict(), "model.pt")'
#: How many mismatching layers an error lists.
MAX_LISTED = 5


def default_checkpoint(bundle: Bundle) -> Path:
    """The bundle's own trained weights, ``models/model.pt``."""
    return bundle.root / "models" / "model.pt"


def load_weights_only(path: str | Path) -> Any:
    """Open a checkpoint with ``torch.load(weights_only=True)`` (on the CPU).

    Args:
        path: the ``.pt`` file.

    Returns:
        What the file holds: tensors in dicts / lists (never arbitrary objects).

    Raises:
        ConfigError: the file is missing, is not a PyTorch checkpoint, or holds pickled objects
            such as a whole model (refused: loading them would run code from the file).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: checkpoint not found (train the bundle first, or pass the weights file)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        if found is not None:
            raise ConfigError(
                f"{path}: refused: the checkpoint holds pickled Python objects ({found.group(1)}), e.g. a whole "
                "model saved with torch.save(model); loading them would run code from the file. Only weights "
                f"are accepted: {HOW_TO_SAVE}"
            ) from err
        if _is_pickle_container(path):  # a torch.save file whose pickle the safe loader cannot follow
            operand = re.search(r"Unsupported operand \d+", str(err))
            raise ConfigError(
                f"{path}: refused: its pickle uses instructions that torch.load(weights_only=True) does not "
                f"accept{f' ({operand.group(0)})' if operand else ''}; only plain weights are accepted: {HOW_TO_SAVE}"
            ) from err
        raise ConfigError(f"{path}: not a readable PyTorch checkpoint (not a torch.save file)") from err
    except Exception as err:  # corrupt zip, truncated file, not a torch file at all
        raise ConfigError(f"{path}: not a readable PyTorch checkpoint: {_first_line(err)}") from err


def _is_pickle_container(path: Path) -> bool:
    """A ``torch.save`` zip archive, or a legacy file starting with a pickle protocol header."""
    import zipfile

    with path.open("rb") as f:
        head = f.read(2)
    return zipfile.is_zipfile(path) or (len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5)


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def _as_state_dict(path: Path, content: Any) -> dict[str, torch.Tensor]:
    """The network's state dict inside ``content`` (bare, or under ``"model"``)."""
    import torch

    if isinstance(content, Mapping) and isinstance(content.get("model"), Mapping):
        content = content["model"]
    if not isinstance(content, Mapping) or not content:
        raise ConfigError(
            f"{path}: not a state dict: expected a dict of tensors (or one under 'model'), got "
            f"{type(content).__name__}; {HOW_TO_SAVE}"
        )
    bad = [k for k, v in content.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ConfigError(
            f"{path}: not a state dict: entries {bad[:MAX_LISTED]} are not tensors; {HOW_TO_SAVE}"
        )
    return dict(content)


def check_state_dict(
    state: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    path: str | Path,
    network: str = "network_def",
) -> None:
    """Compare a checkpoint's state dict with the network's, key by key and shape by shape.

    Args:
        state: the checkpoint's state dict.
        expected: ``network.state_dict()`` of the network the weights are for.
        path: the checkpoint (named in the error).
        network: how the network is described in the error.

    Raises:
        ConfigError: listing up to :data:`MAX_LISTED` layers with different shapes
            (``layer: expected (16, 1, 3, 3), got (32, 1, 3, 3)``), then missing and unexpected keys.
    """
    shapes = [
        f"{k}: expected {tuple(v.shape)}, got {tuple(state[k].shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if not (shapes or missing or unexpected):
        return
    parts = []
    if shapes:
        parts.append(f"{len(shapes)} layer(s) with other shapes: " + "; ".join(shapes[:MAX_LISTED]))
    if missing:
        parts.append(f"{len(missing)} missing key(s): " + ", ".join(missing[:MAX_LISTED]))
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): " + ", ".join(unexpected[:MAX_LISTED]))
    raise ConfigError(
        f"{path}: the weights do not fit the bundle's {network} (a checkpoint of another bundle or of a "
        "differently configured network?): " + " | ".join(parts)
    )


def network_from_bundle(bundle: Bundle, overrides: Mapping[str, Any] | None = None) -> torch.nn.Module:
    """Instantiate ``network_def`` of the bundle's ``inference.json`` (with ad-hoc ``overrides``), on the CPU.

    A training run's bundle holds its recipe in its configs, so its network needs no overrides.
    """
    from sum_monai.bundle.run import create_workflow

    parser = create_workflow(bundle, "inference", overrides).parser
    return parser.get_parsed_content("network_def", instantiate=True)


def load_checked_state_dict(
    bundle: Bundle,
    checkpoint: str | Path | None = None,
    network: torch.nn.Module | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, torch.Tensor]:
    """Load a checkpoint safely and check that it fits the bundle's network.

    Args:
        bundle: the bundle the weights are for.
        checkpoint: the ``.pt`` file; default the bundle's ``models/model.pt``.
        network: the network to compare with; default ``network_def`` of ``inference.json`` built
            with ``overrides``.
        overrides: ad-hoc ``inference.json`` values used to build the network (a training run's
            bundle needs none).

    Returns:
        The state dict, ready for ``network.load_state_dict(state)``.

    Raises:
        ConfigError: missing file, pickled objects (refused), not a state dict, or keys / shapes
            that differ from the network's.
    """
    path = Path(checkpoint) if checkpoint is not None else default_checkpoint(bundle)
    state = _as_state_dict(path, load_weights_only(path))
    net = network if network is not None else network_from_bundle(bundle, overrides)
    check_state_dict(state, net.state_dict(), path, network=f"network_def ({bundle.name})")
    return state
