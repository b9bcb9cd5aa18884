"""A run's recipe written into a bundle folder: the trained bundle is the bundle it trained from.

``sum-monai train`` copies the source bundle to ``RUN/bundle/<name>/`` and writes the recipe
(``--set`` / ``--config`` values: image size, network widths, loss settings, epochs ...) into
that copy's config files before training starts; training, evaluation, export, the MLflow
registration, the archive and MONAI Label then all use that folder as it is. Nothing replays
overrides later, so a value that is not written here never reaches a shipped bundle, and what
describes one run on one machine (data, folders, device) travels separately as
:class:`sum_monai.workflows.settings.RunSettings`.

How an id is written (the file's own JSON is edited, so override files stay override files):
each config file receives the ids it defines: ``image_size`` goes to every file with a top-level
``image_size``; ``loss#batch`` into ``train.json``'s ``loss``; ``validate#dataloader#batch_size``
to ``evaluate.json``, whose top-level key it is. ``_meta_#...`` ids go to ``metadata.json``, whose
declared network ``spatial_shape`` is then derived from ``network_input_size`` in
``inference.json``. An id no file defines is an error (a typo would otherwise train the default).

Example:
    >>> from sum_monai.bundle.locate import Bundle
    >>> run_bundle = write_recipe_bundle(Bundle.find("breast_us_seg_2d"), "runs/x/bundle/breast_us_seg_2d",
    ...                                  {"image_size": 128})  # doctest: +SKIP
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sum_monai.bundle.locate import Bundle
from sum_monai.errors import ConfigError
from sum_monai.utils.atomic import atomic_dir, atomic_write_text

#: What a bundle folder holds besides ``models/``; everything else (eval/, caches) stays out.
BUNDLE_PARTS = ("configs", "scripts", "docs", "LICENSE")
#: The id of ``inference.json`` that gives the network's input size (``metadata.json`` declares it).
INPUT_SIZE_ID = "network_input_size"
META_PREFIX = "_meta_#"


def write_recipe_bundle(source: Bundle, out_dir: str | Path, recipe: Mapping[str, Any]) -> Bundle:
    """Copy ``source`` (configs, scripts, docs, LICENSE; no weights) to ``out_dir`` with ``recipe`` written in.

    Args:
        source: the bundle to start from.
        out_dir: the new bundle folder (must not exist, or is replaced whole).
        recipe: config ids and values (see the module doc for where each goes).

    Raises:
        ConfigError: an id that none of the bundle's config files defines.
    """
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, overwrite=True) as tmp:
        copy_bundle_parts(source.root, tmp)
        write_recipe(tmp, recipe)
    return Bundle(out_dir.resolve())


def copy_bundle_parts(src: Path, dst: Path) -> None:
    """Copy the parts of a bundle folder (not ``models/``, never caches) from ``src`` into ``dst``."""
    for part in BUNDLE_PARTS:
        path = src / part
        if path.is_dir():
            shutil.copytree(path, dst / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif path.is_file():
            shutil.copy2(path, dst / part)


def write_recipe(root: Path, recipe: Mapping[str, Any]) -> list[Path]:
    """Write ``recipe`` into the config files of the bundle folder ``root``; return the files changed.

    Raises:
        ConfigError: an id that no config file defines (listed with the files looked in).
    """
    configs = root / "configs"
    files = sorted(p for p in configs.glob("*.json") if p.name != "metadata.json")
    contents = {p: json.loads(p.read_text()) for p in files}
    meta_path = configs / "metadata.json"
    meta = json.loads(meta_path.read_text())
    changed: set[Path] = set()
    unknown = []
    for key, value in recipe.items():
        if key.startswith(META_PREFIX):
            _set_path(meta, key[len(META_PREFIX) :].split("#"), value, meta_path, key)
            changed.add(meta_path)
            continue
        hits = [p for p, content in contents.items() if _assign(content, key, value, p)]
        changed.update(hits)
        if not hits:
            unknown.append(key)
    if unknown:
        raise ConfigError(
            f"{root.name}: no config file defines {', '.join(repr(k) for k in unknown)} "
            f"(looked in {', '.join(p.name for p in files)}); check the spelling of --set / --config ids"
        )
    for path in changed - {meta_path}:
        atomic_write_text(path, json.dumps(contents[path], indent=4) + "\n")
    if _declare_input_size(root, meta):
        changed.add(meta_path)
    if meta_path in changed:
        atomic_write_text(meta_path, json.dumps(meta, indent=4) + "\n")
    return sorted(changed)


def _assign(content: dict[str, Any], key: str, value: Any, path: Path) -> bool:
    """Set ``key`` in one config file's JSON if the file defines it (see the module doc)."""
    parts = key.split("#")
    # the longest top-level key of the file that ``key`` is, or lies inside (``a#b`` keys of override files)
    for n in range(len(parts), 0, -1):
        top = "#".join(parts[:n])
        if top in content:
            if n == len(parts):
                content[top] = value
            else:
                _set_path(content[top], parts[n:], value, path, key)
            return True
    return False


def _set_path(node: Any, parts: list[str], value: Any, path: Path, key: str) -> None:
    """Set ``node[p0][p1]...`` = ``value``; the parents must exist (a list index must be in range)."""
    for part in parts[:-1]:
        node = _child(node, part, path, key)
    last = parts[-1]
    if isinstance(node, list):
        node[_index(node, last, path, key)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"{path}: cannot set {key!r}: {last!r} would go inside a {type(node).__name__}")


def _child(node: Any, part: str, path: Path, key: str) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, path, key)]
    if isinstance(node, dict) and part in node:
        return node[part]
    raise ConfigError(f"{path}: cannot set {key!r}: it has no {part!r}")


def _index(node: list, part: str, path: Path, key: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"{path}: cannot set {key!r}: {part!r} is not an index of a list of {len(node)}")
    return int(part)


def _declare_input_size(root: Path, meta: dict[str, Any]) -> bool:
    """Make ``metadata.json``'s input/output ``spatial_shape`` the configured ``network_input_size``.

    Returns whether ``meta`` changed. Bundles whose ``inference.json`` has no such id keep theirs.
    """
    from monai.bundle import ConfigParser

    inference = root / "configs" / "inference.json"
    parser = ConfigParser()
    parser.read_config(str(inference))
    if INPUT_SIZE_ID not in parser:
        return False
    size = parser.get_parsed_content(INPUT_SIZE_ID, instantiate=False)
    formats = meta["network_data_format"]
    changed = False
    for group, name in (("inputs", "image"), ("outputs", "pred")):
        spec = formats[group][name]
        shape = [int(s) for s in size] if isinstance(size, (list, tuple)) else [int(size)] * len(spec["spatial_shape"])
        if spec["spatial_shape"] != shape:
            spec["spatial_shape"] = shape
            changed = True
    return changed
