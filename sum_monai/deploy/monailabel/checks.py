"""Does a bundle have what MONAI Label 0.8.5 reads? All problems of a bundle reported at once.

MONAI Label silently leaves a bundle it cannot use out of ``GET /info/`` (a log warning only), and
some mistakes only show as an HTTP 500 on the first ``/infer``; :func:`check_bundle` finds them
before the server starts, each with what to change. The rules follow
``monailabel.tasks.infer.bundle.BundleInferTask`` (see ``docs/monailabel.md``, "Requirements on a
bundle").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sum_monai.errors import ConfigError

#: MONAI Label picks a task type from these words in a bundle's name (``_get_type``); ours segment.
RESERVED_NAME_WORDS = ("deepedit", "deepgrow", "detection", "classification")


@dataclass(frozen=True)
class BundleInfo:
    """What MONAI Label will make of a bundle (see :func:`check_bundle`).

    Attributes:
        name: the bundle folder's name, which is the model name in the MONAI Label API.
        path: the bundle folder.
        dimension: 2 or 3, from ``spatial_shape`` of the metadata's input.
        labels: label name -> value, from the output's ``channel_def`` (background left out).
        weights: ``models/model.pt`` or ``models/model.ts``.
        trainable: whether ``configs/train.json`` exists (MONAI Label offers training then).
    """

    name: str
    path: Path
    dimension: int
    labels: dict[str, int]
    weights: Path
    trainable: bool = False


def check_bundle(bundle_dir: str | Path) -> BundleInfo:
    """Check that a bundle has everything MONAI Label 0.8.5 reads, and report all problems at once.

    The checks follow ``monailabel.tasks.infer.bundle.BundleInferTask``: the first input of
    ``network_data_format`` is fed as ``image`` and the first output read back as ``pred``; the
    dimension is ``len(spatial_shape)`` (3 if missing); labels come from the output's
    ``channel_def``. 2D bundles must also return a uint8 label map without channel axis, because
    MONAI Label writes 2D masks with ITK, which refuses float PNGs and writes a ``(1, W)`` strip for a
    ``(1, W, H)`` array.

    Args:
        bundle_dir: the bundle folder (holding ``configs/`` and ``models/``).

    Returns:
        a :class:`BundleInfo`.

    Raises:
        ConfigError: listing every problem found, each with what to change.
    """
    path = Path(bundle_dir).absolute()
    if not path.is_dir():
        raise ConfigError(f"{path}: bundle folder not found")
    name = path.name
    problems: list[str] = []
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        problems.append(f"folder name {name!r} must be letters, digits, '_', '.', '-' (it is the model name)")
    for word in RESERVED_NAME_WORDS:
        if word in name.lower():
            problems.append(f"folder name contains {word!r}: MONAI Label would treat it as a {word} model")
    meta = _read_json(path / "configs" / "metadata.json", problems)
    infer = _read_json(path / "configs" / "inference.json", problems)
    dimension, labels = 3, {}
    if meta is not None:
        dimension, labels = _check_metadata(meta, problems)
    weights = next(
        (w for w in (path / "models" / "model.pt", path / "models" / "model.ts") if w.is_file()), None
    )
    if weights is None:
        problems.append("models/model.pt (state dict) or models/model.ts (TorchScript) is missing")
    if infer is not None:
        _check_inference(infer, dimension, weights, problems)
        _check_scripts(path, infer, problems)
    if problems:
        raise ConfigError(
            f"bundle {path} cannot be served by MONAI Label:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    assert weights is not None
    return BundleInfo(name, path, dimension, labels, weights, (path / "configs" / "train.json").is_file())


def _read_json(file: Path, problems: list[str]) -> dict[str, Any] | None:
    """Load a JSON object, adding a problem instead of raising."""
    if not file.is_file():
        problems.append(f"configs/{file.name} is missing")
        return None
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as err:
        problems.append(f"configs/{file.name} is not valid JSON: {err}")
        return None
    if not isinstance(data, dict):
        problems.append(f"configs/{file.name} must hold a JSON object")
        return None
    return data


def _check_metadata(meta: dict[str, Any], problems: list[str]) -> tuple[int, dict[str, int]]:
    """Check ``network_data_format``; return (dimension, labels)."""
    fmt = meta.get("network_data_format") or {}
    inputs, outputs = fmt.get("inputs") or {}, fmt.get("outputs") or {}
    if not isinstance(inputs, dict) or not inputs or not isinstance(outputs, dict) or not outputs:
        problems.append("metadata.json needs network_data_format.inputs and .outputs")
        return 3, {}
    (in_key, image), (out_key, pred) = next(iter(inputs.items())), next(iter(outputs.items()))
    if in_key != "image":
        problems.append(f"metadata.json: first input is {in_key!r}; MONAI Label feeds the image as 'image'")
    if out_key != "pred":
        problems.append(
            f"metadata.json: first output is {out_key!r}; MONAI Label reads the prediction as 'pred'"
        )
    shape = image.get("spatial_shape") if isinstance(image, dict) else None
    if not isinstance(shape, list) or len(shape) not in (2, 3):
        problems.append(
            "metadata.json: inputs.image.spatial_shape must list 2 (2D) or 3 (3D) sizes; "
            "MONAI Label takes the dimension from its length (3 when missing)"
        )
        dimension = 3
    else:
        dimension = len(shape)
    channels = pred.get("channel_def") if isinstance(pred, dict) else None
    labels: dict[str, int] = {}
    if isinstance(channels, dict):
        try:
            labels = {str(v).lower(): int(k) for k, v in channels.items() if str(v).lower() != "background"}
        except ValueError:
            problems.append(
                "metadata.json: outputs.pred.channel_def keys must be label values ('0', '1', ...)"
            )
    if isinstance(channels, dict) and str(channels.get("0", "background")).lower() != "background":
        problems.append(
            f"metadata.json: outputs.pred.channel_def '0' is {channels['0']!r}; name it 'background' "
            "(MONAI Label hides exactly that name; any other becomes a label with value 0)"
        )
    if not labels:
        problems.append(
            "metadata.json: outputs.pred.channel_def must name the labels, e.g. "
            '{"0": "background", "1": "lesion"} (MONAI Label shows these names)'
        )
    return dimension, labels


def _check_inference(
    infer: dict[str, Any], dimension: int, weights: Path | None, problems: list[str]
) -> None:
    """Check the ids MONAI Label reads from ``inference.json``."""
    if "preprocessing" not in infer and "pre_transforms" not in infer:
        problems.append(
            "inference.json needs 'preprocessing' (the transforms from file name to network input)"
        )
    if "postprocessing" not in infer and "post_transforms" not in infer:
        problems.append(
            "inference.json needs 'postprocessing' (the transforms from network output to label map)"
        )
    if weights is not None and weights.suffix == ".pt":
        net = infer.get("network_def")
        if not isinstance(net, dict):
            problems.append(
                "inference.json needs 'network_def' (MONAI Label builds it to load models/model.pt)"
            )
        elif isinstance(net.get("spatial_dims"), int) and net["spatial_dims"] != dimension:
            problems.append(
                f"network_def.spatial_dims is {net['spatial_dims']} but metadata spatial_shape has {dimension} sizes"
            )
    if dimension == 2:
        post = _transforms(infer, "postprocessing") or _transforms(infer, "post_transforms")
        names = [str(t.get("_target_", "")).rsplit(".", 1)[-1] for t in post]
        if not any(n in ("SqueezeDimd", "SqueezeDimD", "SqueezeDimDict") for n in names):
            problems.append(
                "2D bundle: postprocessing must end with SqueezeDimd(keys='pred', dim=0); MONAI Label writes a "
                "(1, W, H) mask as a 1 x W image"
            )
        # scripts.lesions.KeepConfidentLesionsd writes a uint8 label map itself
        if not any("uint8" in str(t.get("dtype", "")) for t in post) and "KeepConfidentLesionsd" not in names:
            problems.append(
                "2D bundle: postprocessing must cast the label map to uint8 (AsDiscreted(argmax=True, "
                "dtype='$torch.uint8'), CastToTyped or scripts.lesions.KeepConfidentLesionsd); ITK cannot write a float PNG"
            )


def _check_scripts(path: Path, infer: dict[str, Any], problems: list[str]) -> None:
    """Every ``scripts.<module>`` that inference.json names must be in the bundle's ``scripts/``."""
    modules = sorted(set(re.findall(r"\bscripts\.(\w+)", json.dumps(infer))))
    if modules and not (path / "scripts" / "__init__.py").is_file():
        problems.append("inference.json uses the bundle's scripts package but scripts/__init__.py is missing")
    for mod in modules:
        if not (
            (path / "scripts" / f"{mod}.py").is_file() or (path / "scripts" / mod / "__init__.py").is_file()
        ):
            problems.append(f"inference.json uses scripts.{mod} but scripts/{mod}.py is missing")


def _transforms(config: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The transform entries of ``config[key]`` (a list or a Compose; ``@id`` references followed)."""
    value: Any = config.get(key)
    for _ in range(5):
        if isinstance(value, str) and value.startswith("@"):
            value = config.get(value[1:].split("#")[0])
        elif isinstance(value, dict) and "transforms" in value:
            value = value["transforms"]
        else:
            break
    return [t for t in value if isinstance(t, dict)] if isinstance(value, list) else []
