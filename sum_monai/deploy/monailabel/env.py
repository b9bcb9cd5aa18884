"""MONAI Label's own virtual environment: where it is, whether it works, how to create it.

MONAI Label 0.8.5 cannot share the project's environment: it needs ``pydicom<3`` (pydicom-seg
breaks on 3) and a PyPI torchvision that imports beside torch 2.14.1. So it gets its own venv,
``.venv-monailabel`` beside the project's ``.venv`` (or ``$SUM_MONAI_MONAILABEL_VENV``), and every
MONAI Label process runs with that venv's interpreter and none of the project's environment.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from sum_monai.errors import ConfigError

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


def default_venv() -> Path:
    """Return the MONAI Label venv: ``$SUM_MONAI_MONAILABEL_VENV`` or ``.venv-monailabel`` in the repo.

    The repository is the folder holding ``pyproject.toml`` above the installed package (an
    editable install); for any other install it is the current directory.
    """
    if os.environ.get(VENV_ENV_VAR):
        return Path(os.environ[VENV_ENV_VAR]).expanduser().absolute()
    repo = Path(__file__).resolve().parents[3]
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
        [str(python), "-c", _CHECK_SCRIPT, pins], capture_output=True, text=True, env=clean_env(venv)
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
        _run(cmd, what, env=clean_env(venv))
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


def clean_env(venv: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for MONAI Label processes: the venv first, nothing of the project's venv.

    Args:
        venv: the MONAI Label venv.
        extra: variables added last (they win).
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])
    env.update(extra or {})
    return env
