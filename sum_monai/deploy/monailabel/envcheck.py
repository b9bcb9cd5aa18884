"""Do the bundles' inference configs build inside MONAI Label's environment? Checked before serving.

:func:`~sum_monai.deploy.monailabel.checks.check_bundle` reads the JSON only. Two failures only show
when MONAI Label runs the bundle, in its own venv:

- a bundle script that imports something the venv lacks (``from pydicom.pixels import ...``
  needs pydicom 3; the venv holds pydicom 2.4). MONAI Label still lists such a bundle in
  ``GET /info/``, because it builds only ``network_def`` at start-up, and then answers every
  ``POST /infer`` with HTTP 500;
- weights that do not fit ``network_def`` (a training override such as
  ``network_def#channels`` not in the config). MONAI Label loads them with ``strict=False``, logs a
  warning and serves a partly random network.

:func:`check_bundles_in_env` builds, in the venv, what MONAI Label builds: ``preprocessing``,
``inferer`` and ``postprocessing`` with ``bundle_root`` set and ``device`` the string ``"cpu"``,
and ``network_def`` with ``models/model.pt`` loaded strictly. Each bundle's folder comes first on
``sys.path`` and the ``scripts`` modules are unloaded between bundles, as MONAI Label does.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable
from pathlib import Path

from sum_monai.deploy.monailabel.env import clean_env, venv_python
from sum_monai.errors import ConfigError

#: Marks the result line among whatever MONAI or torch print.
_RESULT_MARK = "SUM_MONAI_ENVCHECK "

# Run inside the MONAI Label venv with a JSON list of bundle folders; prints one result line.
_SCRIPT = """
import json, os, sys, traceback
import torch
from monai.bundle import ConfigParser

MARK = sys.argv[2]


def reason(err, root):
    # MONAI wraps instantiation errors and pydoc wraps import errors: report the innermost one
    seen = set()
    while id(err) not in seen:
        seen.add(id(err))
        inner = getattr(err, "value", None) if type(err).__name__ == "ErrorDuringImport" else None
        inner = inner or err.__cause__ or err.__context__
        if inner is None:
            break
        err = inner
    where = ""
    for frame, line in traceback.walk_tb(err.__traceback__):
        name = os.path.abspath(frame.f_code.co_filename)
        if name.startswith(root + os.sep):
            where = f" ({os.path.relpath(name, root)}:{line})"
    return f"{type(err).__name__}: {err}{where}"


results = {}
for root in json.loads(sys.argv[1]):
    problems = {}  # reason -> config ids (postprocessing repeats a preprocessing failure via Invertd)
    sys.path.insert(0, root)
    for mod in [m for m in sys.modules if m == "scripts" or m.startswith("scripts.")]:
        del sys.modules[mod]
    try:
        parser = ConfigParser()
        parser.read_config(os.path.join(root, "configs", "inference.json"))
        parser.config.update({"bundle_root": root, "device": "cpu"})
        for keys in (("preprocessing", "pre_transforms"), ("inferer",), ("postprocessing", "post_transforms")):
            key = next((k for k in keys if parser.get(k) is not None), None)
            if key is None:
                continue
            try:
                parser.get_parsed_content(key, instantiate=True)
            except Exception as err:
                problems.setdefault(reason(err, root), []).append(key)
        weights = os.path.join(root, "models", "model.pt")
        if os.path.isfile(weights):
            try:
                net = parser.get_parsed_content("network_def", instantiate=True)
                state = torch.load(weights, map_location="cpu")
                net.load_state_dict(state.get("model", state), strict=True)
            except Exception as err:
                problems.setdefault(reason(err, root), []).append("network_def with models/model.pt")
    except Exception as err:
        problems.setdefault(reason(err, root), []).append("inference.json")
    finally:
        sys.path.remove(root)
    results[root] = [f"{', '.join(keys)}: {why}" for why, keys in problems.items()]
print(MARK + json.dumps(results), flush=True)
"""


def env_problems(bundles: Iterable[str | Path], venv: str | Path) -> dict[Path, list[str]]:
    """Build each bundle's inference components inside ``venv``; return the problems per bundle.

    Args:
        bundles: bundle folders (already passing :func:`~sum_monai.deploy.monailabel.checks.check_bundle`).
        venv: the MONAI Label venv (see :func:`~sum_monai.deploy.monailabel.env.check_env`).

    Returns:
        absolute bundle folder -> problems (an empty list when the bundle builds), e.g.
        ``{Path(".../mammo_seg_2d"): ["preprocessing, postprocessing: ModuleNotFoundError: No module
        named 'pydicom.pixels' (scripts/mammo.py:72)"]}``.

    Raises:
        ConfigError: if the venv's interpreter cannot run the check at all.
    """
    paths = [str(Path(b).absolute()) for b in bundles]
    python = venv_python(venv)
    if not python.is_file():
        raise ConfigError(
            f"MONAI Label environment not found: {python} does not exist; run `sum-monai monailabel setup`"
        )
    proc = subprocess.run(
        [str(python), "-c", _SCRIPT, json.dumps(paths), _RESULT_MARK],
        capture_output=True,
        text=True,
        env=clean_env(Path(venv), {"OMP_NUM_THREADS": "1"}),
    )
    line = next((s for s in reversed(proc.stdout.splitlines()) if s.startswith(_RESULT_MARK)), None)
    if proc.returncode != 0 or line is None:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ConfigError(f"checking the bundles in {venv} failed (exit status {proc.returncode}): {last}")
    found = json.loads(line[len(_RESULT_MARK) :])
    return {Path(p): list(found[p]) for p in paths}


def check_bundles_in_env(bundles: Iterable[str | Path], venv: str | Path) -> None:
    """Raise if a bundle's inference config does not build in MONAI Label's venv (see the module doc).

    Raises:
        ConfigError: naming each failing bundle, the config id, the innermost error and the
            bundle file and line it comes from.
    """
    problems = {path: found for path, found in env_problems(bundles, venv).items() if found}
    if problems:
        lines = [f"  - {path.name}: {p}" for path, found in problems.items() for p in found]
        raise ConfigError(
            f"bundle(s) {', '.join(p.name for p in problems)} do not build in MONAI Label's environment {venv}:\n"
            + "\n".join(lines)
            + "\nbundle scripts must import with that venv's packages (monai 1.6.1, torch 2.14.1, pydicom 2.4: "
            "no pydicom.pixels) and models/model.pt must fit network_def; see docs/monailabel.md"
        )
