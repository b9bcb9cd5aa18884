"""The resolved bundle config as MLflow parameters."""

from __future__ import annotations

import contextlib
from typing import Any

#: Config ids whose leaves are logged (the recipe); everything else (paths, objects) is not.
RECIPE_IDS = ("network_def", "loss", "optimizer", "lr_scheduler")
#: Top-level scalar settings worth a parameter each.
SCALAR_IDS = (
    "epochs", "batch_size", "learning_rate", "image_size", "roi_size", "pixdim", "val_interval",
    "seed", "cache_rate", "num_samples", "num_classes", "precision", "device",
)  # fmt: skip


def _resolve(parser: Any, value: Any) -> Any:
    """Replace a plain ``@id`` reference by the value it points to, if that is a simple value."""
    if isinstance(value, str) and value.startswith("@") and value[1:] in parser:
        target = parser.get(value[1:])
        if isinstance(target, (int, float, bool, list, tuple)) or (
            isinstance(target, str) and not target.startswith(("$", "@"))
        ):
            return target
    return value


def _leaves(parser: Any, prefix: str, value: Any, out: dict[str, str]) -> None:
    value = _resolve(parser, value)
    if isinstance(value, dict):
        for k, v in value.items():
            if k in ("params", "optimizer", "_desc_", "_requires_"):
                continue
            _leaves(parser, f"{prefix}.{k}", v, out)
    elif isinstance(value, (str, int, float, bool)) or value is None:
        out[prefix] = str(value)
    elif isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float, bool)) for v in value):
        out[prefix] = str(list(value))


def config_params(parser: Any) -> dict[str, str]:
    """Flatten the training recipe of a parsed bundle config into ``{name: str}`` MLflow params.

    Args:
        parser: a ``monai.bundle.ConfigParser`` with the bundle configs and overrides applied.

    Returns:
        e.g. ``{"epochs": "20", "network_def._target_": "UNet", "network_def.channels": "[16, 32]"}``
        (plain ``@id`` references are resolved; other expressions are logged as written).
    """
    out: dict[str, str] = {}
    for key in SCALAR_IDS:
        if key in parser:
            raw = parser.get(key)
            if isinstance(raw, str) and raw.startswith("$"):
                # an expression that needs the runtime is logged as written
                with contextlib.suppress(Exception):
                    raw = parser.get_parsed_content(key)
            _leaves(parser, key, raw, out)
    for key in RECIPE_IDS:
        if key in parser:
            _leaves(parser, key, parser.get(key), out)
    return {k.replace("#", "."): v[:6000] for k, v in out.items()}
