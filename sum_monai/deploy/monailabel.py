"""Serve the project's MONAI Bundles through a MONAI Label server, offline.

MONAI Label 0.8.5 runs bundles through its ``monaibundle`` sample app. It cannot share the
project's environment (it needs ``pydicom<3`` and a PyPI torchvision that imports beside torch
2.14.1), so it gets its own virtual environment, created by :func:`setup_env`. Serving then takes
three steps, each a function here:

1. :func:`check_bundle`: does a bundle have what MONAI Label reads (``configs/metadata.json``,
   ``configs/inference.json`` with ``network_def`` / ``preprocessing`` / ``postprocessing``,
   ``models/model.pt``)? MONAI Label itself silently drops a bundle it cannot use from ``/info/``.
2. :func:`prepare_app`: copy the sample app out of the venv and each bundle into
   ``<app>/model/<name>``, where the app finds it without downloading anything.
3. :class:`MonaiLabelServer`: start ``monailabel start_server`` on 127.0.0.1, wait until it
   answers, stop it cleanly.

The server itself, its REST API and the bundle inference are MONAI Label's; nothing here
re-implements them. See ``docs/monailabel.md`` for the user steps and the requirements on a bundle.

Example:
    >>> from sum_monai.deploy import monailabel as ml  # doctest: +SKIP
    >>> venv = ml.setup_env()  # doctest: +SKIP
    >>> app = ml.prepare_app(["bundles/breast_us_seg_2d"], "runs/monailabel", venv)  # doctest: +SKIP
    >>> with ml.MonaiLabelServer(venv, app, "runs/monailabel/studies", ["breast_us_seg_2d"]) as srv:
    ...     print(srv.wait_ready()["models"].keys())  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import filecmp
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sum_monai.errors import ConfigError
from sum_monai.utils.atomic import atomic_dir

logger = logging.getLogger(__name__)

#: Environment variable naming the MONAI Label virtual environment.
VENV_ENV_VAR = "SUM_MONAI_MONAILABEL_VENV"
#: Default folder of that environment, beside the project's ``.venv``.
DEFAULT_VENV_NAME = ".venv-monailabel"
#: Installed first: the torch / torchvision pair that import together (both on local disk here).
TORCH_PINS: tuple[str, ...] = ("torch==2.14.1", "torchvision==0.29.1")
#: Installed second. pydicom-seg (a MONAI Label dependency) breaks on pydicom 3, which the newest
#: dicomweb-client / pynetdicom require, so those two are held back with it.
MONAILABEL_PINS: tuple[str, ...] = (
    "monailabel==0.8.5",
    "monai==1.6.1",
    "pydicom<3",
    "dicomweb-client<0.60",
    "pynetdicom<3",
)
#: The sample app that runs MONAI Bundles, relative to the venv (shipped in the wheel's data).
SAMPLE_APP = Path("monailabel") / "sample-apps" / "monaibundle"
#: MONAI Label picks a task type from these words in a bundle's name (``_get_type``); ours segment.
RESERVED_NAME_WORDS = ("deepedit", "deepgrow", "detection", "classification")
#: Module written into the app (``lib/infers/``) and used by its ``main.py`` instead of MONAI Label's
#: BundleInferTask: MONAI 1.6 ``Spacingd`` updates every ``image_*`` entry of the data as a meta
#: dict when the input is NIfTI, and MONAI Label 0.8.5 keeps the upload path there as the string
#: ``image_path``, so any bundle resampling a NIfTI would fail with "'str' object has no attribute
#: 'update'". The subclass hides ``image_path`` from the bundle's preprocessing only.
APP_INFER_MODULE = '''"""MONAI Label's BundleInferTask with `image_path` kept away from the bundle's preprocessing.

Written by sum_monai (sum_monai.deploy.monailabel.prepare_app): MONAI 1.6 Spacingd treats every
`image_*` entry as a meta dict for NIfTI input, but MONAI Label keeps the input path as the string
`image_path` in the same dict.
"""

from monailabel.tasks.infer.bundle import BundleInferTask as _BundleInferTask


class BundleInferTask(_BundleInferTask):
    """Run the bundle's preprocessing without `image_path`, then put it back for the writer."""

    def run_pre_transforms(self, data, transforms):
        path = data.pop("image_path", None)
        result = super().run_pre_transforms(data, transforms)
        if path is not None:
            data["image_path"] = path
            result["image_path"] = path
        return result
'''
#: The import in the sample app's ``main.py`` that :func:`prepare_app` points at that module.
APP_IMPORT = (
    "from monailabel.tasks.infer.bundle import BundleInferTask\n",
    "from lib.infers.sum_monai_bundle import BundleInferTask  # sum_monai: see that module\n",
)
#: Bundle files and folders not copied into the app (run outputs, caches).
COPY_IGNORE = ("__pycache__", "*.pyc", "eval", "mlruns", "mlruns.db", ".pytest_cache")

# Run inside the MONAI Label venv: import what the server imports, compare versions with the pins.
_CHECK_SCRIPT = """
import json, sys
from importlib import metadata
from packaging.requirements import Requirement
import torch, torchvision, pydicom, monai
import monailabel.main, monailabel.tasks.infer.bundle, monailabel.tasks.train.bundle
found, wrong = {}, []
for spec in json.loads(sys.argv[1]):
    req = Requirement(spec)
    found[req.name] = metadata.version(req.name)
    if not req.specifier.contains(found[req.name], prereleases=True):
        wrong.append(f"{req.name} {found[req.name]} (needs {req.specifier})")
print(json.dumps({"versions": found, "wrong": wrong}))
"""


# ----------------------------------------------------------------------------------------------
# The MONAI Label environment
# ----------------------------------------------------------------------------------------------


def default_venv() -> Path:
    """Return the MONAI Label venv: ``$SUM_MONAI_MONAILABEL_VENV`` or ``.venv-monailabel`` in the repo.

    The repository is the folder holding ``pyproject.toml`` above the installed package (an
    editable install); for any other install it is the current directory.
    """
    if os.environ.get(VENV_ENV_VAR):
        return Path(os.environ[VENV_ENV_VAR]).expanduser().absolute()
    repo = Path(__file__).resolve().parents[2]
    root = repo if (repo / "pyproject.toml").is_file() else Path.cwd()
    return (root / DEFAULT_VENV_NAME).absolute()


def venv_python(venv: str | Path) -> Path:
    """Return the Python interpreter of ``venv`` (POSIX layout)."""
    return Path(venv) / "bin" / "python"


def check_env(venv: str | Path) -> dict[str, str]:
    """Check that ``venv`` imports MONAI Label and holds the pinned versions.

    Args:
        venv: the MONAI Label virtual environment.

    Returns:
        installed versions by distribution name (``{"monailabel": "0.8.5", "torch": ...}``).

    Raises:
        ConfigError: if the venv is missing, does not import, or has other versions than the pins;
            the message says to run ``sum-monai monailabel setup``.
    """
    venv = Path(venv)
    python = venv_python(venv)
    fix = f"run `sum-monai monailabel setup --venv {venv}`"
    if not python.is_file():
        raise ConfigError(f"MONAI Label environment not found: {python} does not exist; {fix}")
    pins = json.dumps([*TORCH_PINS, *MONAILABEL_PINS])
    proc = subprocess.run(
        [str(python), "-c", _CHECK_SCRIPT, pins], capture_output=True, text=True, env=_clean_env(venv)
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ConfigError(f"MONAI Label environment {venv} does not import: {last}; {fix}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["wrong"]:
        raise ConfigError(
            f"MONAI Label environment {venv} has other versions: {', '.join(result['wrong'])}; {fix}"
        )
    return dict(result["versions"])


def setup_env(
    venv: str | Path | None = None, force: bool = False, log: Callable[[str], None] = print
) -> Path:
    """Create (or reuse) MONAI Label's own virtual environment with the pinned versions.

    An environment that already passes :func:`check_env` is reused as it is. Otherwise the venv is
    created with the running interpreter (Python 3.11 matches the local torch wheels), torch and
    torchvision are installed first so pip never swaps them while resolving MONAI Label, then
    MONAI Label and the pins. pip uses its normal configuration (local wheel folders, caps).

    Args:
        venv: where to put it; defaults to :func:`default_venv`.
        force: run the pip installs even if the environment already works.
        log: where progress lines go.

    Returns:
        the venv folder.

    Raises:
        ConfigError: if the folder exists but is not a venv, or pip / the final check fails.
    """
    venv = Path(venv).absolute() if venv else default_venv()
    python = venv_python(venv)
    if not force and python.is_file():
        with contextlib.suppress(ConfigError):
            versions = check_env(venv)
            log(f"MONAI Label environment {venv} is ready (monailabel {versions['monailabel']}); reusing it")
            return venv
    if venv.exists() and not python.is_file():
        raise ConfigError(f"{venv} exists but is not a virtual environment; remove it or pass another --venv")
    if not python.is_file():
        log(f"creating virtual environment {venv}")
        _run([sys.executable, "-m", "venv", str(venv)], "creating the virtual environment")
    pip = [str(python), "-m", "pip", "install"]
    steps = [
        ("upgrading pip", [*pip, "--upgrade", "pip>=24"]),
        ("installing torch and torchvision", [*pip, *TORCH_PINS]),
        ("installing MONAI Label", [*pip, *MONAILABEL_PINS, *TORCH_PINS]),
    ]
    for what, cmd in steps:
        log(f"{what}: {' '.join(cmd[3:])}")
        _run(cmd, what, env=_clean_env(venv))
    versions = check_env(venv)
    log("MONAI Label environment ready: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    return venv


def _run(cmd: Sequence[str], what: str, env: Mapping[str, str] | None = None) -> None:
    """Run ``cmd`` with its output on the terminal; raise ConfigError naming ``what`` if it fails."""
    proc = subprocess.run(list(cmd), env=None if env is None else dict(env))
    if proc.returncode != 0:
        raise ConfigError(
            f"{what} failed (exit status {proc.returncode}): {' '.join(cmd)}; see the output above, "
            "fix the cause (disk space, pip configuration) and run `sum-monai monailabel setup` again"
        )


def _clean_env(venv: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for MONAI Label processes: the venv first, nothing of the project's venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])
    env.update(extra or {})
    return env


# ----------------------------------------------------------------------------------------------
# Bundles
# ----------------------------------------------------------------------------------------------


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
        if not any("uint8" in str(t.get("dtype", "")) for t in post):
            problems.append(
                "2D bundle: postprocessing must cast the label map to uint8 (AsDiscreted(argmax=True, "
                "dtype='$torch.uint8') or CastToTyped); ITK cannot write a float PNG"
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


# ----------------------------------------------------------------------------------------------
# The app folder
# ----------------------------------------------------------------------------------------------


def sample_app(venv: str | Path) -> Path:
    """Return the ``monaibundle`` sample app shipped inside the venv's MONAI Label wheel."""
    app = Path(venv) / SAMPLE_APP
    if not (app / "main.py").is_file():
        raise ConfigError(
            f"MONAI Label sample app not found at {app}; run `sum-monai monailabel setup --venv {venv}`"
        )
    return app


def prepare_app(bundles: Iterable[str | Path], workdir: str | Path, venv: str | Path) -> Path:
    """Make ``<workdir>/app``: the ``monaibundle`` sample app with each bundle in ``model/<name>``.

    The app's ``main.py`` is the sample's with one import changed, to the BundleInferTask of
    :data:`APP_INFER_MODULE` (MONAI 1.6 ``Spacingd`` would otherwise fail on NIfTI input). Bundles
    are copied, not linked, so training through MONAI Label writes its checkpoints into the
    copy and never into ``bundles/``. The app folder is replaced whole (atomically); weights that
    MONAI Label trained in the previous app are first kept in ``<workdir>/trained/<name>/<time>/``.

    Args:
        bundles: bundle folders; each is checked with :func:`check_bundle` first.
        workdir: the work folder; the app becomes ``<workdir>/app``.
        venv: the MONAI Label venv (source of the sample app).

    Returns:
        the app folder.

    Raises:
        ConfigError: if a bundle cannot be served, two bundles share a name, or the sample app is missing.
    """
    infos = [check_bundle(b) for b in bundles]
    if not infos:
        raise ConfigError("no bundle given; pass --bundle bundles/<name> (several are allowed)")
    names = [i.name for i in infos]
    if len(set(names)) != len(names):
        raise ConfigError(f"two bundles share a folder name (the model name): {sorted(names)}")
    source = sample_app(venv)
    app = Path(workdir).absolute() / "app"
    main = (source / "main.py").read_text()
    if APP_IMPORT[0] not in main:
        raise ConfigError(
            f"{source / 'main.py'} no longer imports BundleInferTask as MONAI Label 0.8.5 did; "
            "the venv holds another MONAI Label: run `sum-monai monailabel setup --force`"
        )
    for info in infos:
        _keep_trained(
            app / "model" / info.name / "models", info.path / "models", Path(workdir) / "trained" / info.name
        )
    with atomic_dir(app, overwrite=True) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*COPY_IGNORE))
        (tmp / "main.py").write_text(main.replace(*APP_IMPORT))
        (tmp / "lib" / "infers" / "sum_monai_bundle.py").write_text(APP_INFER_MODULE)
        for info in infos:
            shutil.copytree(info.path, tmp / "model" / info.name, ignore=shutil.ignore_patterns(*COPY_IGNORE))
    return app


def _keep_trained(served: Path, original: Path, keep_root: Path) -> Path | None:
    """Copy ``served`` (an app's ``models/``) to ``keep_root/<time>`` if it differs from ``original``.

    Returns:
        the copy, or ``None`` when there was nothing to keep.
    """
    if not served.is_dir():
        return None
    changed = [
        f
        for f in sorted(served.rglob("*"))
        if f.is_file()
        and not (
            (original / f.relative_to(served)).is_file()
            and filecmp.cmp(f, original / f.relative_to(served), shallow=False)
        )
    ]
    if not changed:
        return None
    keep = keep_root.absolute() / time.strftime("%Y%m%d-%H%M%S")
    with atomic_dir(keep, overwrite=True) as tmp:
        shutil.copytree(served, tmp, dirs_exist_ok=True)
    logger.warning("weights trained by MONAI Label in the previous app kept in %s", keep)
    return keep


# ----------------------------------------------------------------------------------------------
# The server
# ----------------------------------------------------------------------------------------------


def _is_url(studies: str | Path) -> bool:
    """Whether ``studies`` is a DICOMweb server address rather than a folder."""
    return isinstance(studies, str) and studies.startswith(("http://", "https://"))


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def server_command(
    venv: str | Path,
    app: str | Path,
    studies: str | Path,
    models: Sequence[str],
    port: int = 8000,
    host: str = "127.0.0.1",
    train: bool = False,
) -> list[str]:
    """The ``monailabel start_server`` command line for the prepared app.

    ``python -m monailabel.main`` is what the ``monailabel`` wrapper script execs; calling it with
    the venv's interpreter avoids the wrapper picking another ``python`` from PATH. The ``--conf``
    values keep the app offline: bundles come from ``model/`` (``zoo_source github`` never
    contacts the zoo when the folder exists), SAM2 (weights from the internet) is off.

    Args:
        venv: the MONAI Label venv.
        app: the prepared app folder.
        studies: the studies folder (MONAI Label's local datastore; created if missing) or a
            DICOMweb URL.
        models: bundle names, i.e. folder names under ``<app>/model``.
        port: TCP port.
        host: address to listen on (127.0.0.1: this machine only).
        train: offer ``POST /train/{model}`` for bundles with ``configs/train.json``.
    """
    return [
        str(venv_python(venv)), "-m", "monailabel.main", "start_server",
        "--app", str(app), "--studies", str(studies), "--host", host, "--port", str(port),
        "--conf", "models", ",".join(models),
        "--conf", "zoo_source", "github",
        "--conf", "sam2", "false",
        "--conf", "skip_trainers", "false" if train else "true",
        "--conf", "preload", "false",
    ]  # fmt: skip


class MonaiLabelServer:
    """A ``monailabel start_server`` process on 127.0.0.1 that is started, awaited and stopped.

    Args:
        venv: the MONAI Label venv.
        app: the app folder from :func:`prepare_app`.
        studies: the studies folder (created if missing) or a DICOMweb URL (``http(s)://...``).
        models: bundle names to serve (folders under ``<app>/model``).
        port: TCP port; ``None`` picks a free one.
        host: listening address.
        train: offer training (see :func:`server_command`).
        log: file the server's output goes to; ``None`` leaves it on the terminal.
        env: extra environment variables for the server (e.g. ``OMP_NUM_THREADS``).

    Example:
        >>> with MonaiLabelServer(venv, app, studies, ["breast_us_seg_2d"]) as server:  # doctest: +SKIP
        ...     info = server.wait_ready()
    """

    def __init__(
        self,
        venv: str | Path,
        app: str | Path,
        studies: str | Path,
        models: Sequence[str],
        port: int | None = None,
        host: str = "127.0.0.1",
        train: bool = False,
        log: IO[Any] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.venv, self.app = Path(venv), Path(app)
        # a DICOMweb URL stays a string (Path would fold its "//")
        self.studies: str | Path = studies if _is_url(studies) else Path(studies).absolute()
        self.models, self.host, self.train = list(models), host, train
        self.port = port or free_port(host)
        self.log = log
        defaults = {
            # the app unloads each bundle's `scripts` package before using the next bundle only when
            # this is true; several bundles in one app depend on it
            "MONAI_LABEL_RELOAD_APP_LIB": "true",
            # sessions (uploads kept for repeated inference) beside the app instead of ~/.cache
            "MONAI_LABEL_SESSION_PATH": str(self.app.parent / "sessions"),
        }
        self.env = _clean_env(self.venv, {**defaults, **(env or {})})
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the server, e.g. ``http://127.0.0.1:8000``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> MonaiLabelServer:
        """Start the server in its own process group (so stopping it ends its children too)."""
        check_env(self.venv)
        if isinstance(self.studies, Path):
            self.studies.mkdir(parents=True, exist_ok=True)
        cmd = server_command(self.venv, self.app, self.studies, self.models, self.port, self.host, self.train)
        out = self.log if self.log is not None else None
        # cwd = the app's parent: MONAI Label reads settings from a `.env` file in its cwd
        self.proc = subprocess.Popen(
            cmd, cwd=self.app.parent, env=self.env, stdout=out, stderr=subprocess.STDOUT if out else None,
            start_new_session=True,
        )  # fmt: skip
        return self

    def wait_ready(self, timeout: float = 600.0) -> dict[str, Any]:
        """Wait until ``GET /info/`` answers and return its JSON.

        Raises:
            ConfigError: if the server exits first or does not answer within ``timeout`` seconds.
        """
        if self.proc is None:
            raise ConfigError("server not started; call start() first")
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise ConfigError(
                    f"MONAI Label server exited with status {self.proc.returncode} before it was ready; "
                    "see its log above (a bundle that fails to load, or the port is in use)"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/info/", timeout=10) as resp:
                    return dict(json.loads(resp.read()))
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise ConfigError(f"MONAI Label server at {self.url} not ready after {timeout:.0f} s")
            time.sleep(1.0)

    def stop(self, timeout: float = 30.0) -> int | None:
        """Stop the server: SIGINT (uvicorn's clean shutdown), then SIGTERM, then SIGKILL.

        Returns:
            the server's exit status (``None`` if it was never started).
        """
        if self.proc is None:
            return None
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        return self.proc.returncode

    def __enter__(self) -> MonaiLabelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
