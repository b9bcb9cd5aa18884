"""The MONAI Label app folder: the ``monaibundle`` sample app with our bundles in ``model/``.

MONAI Label finds a bundle without downloading anything when its folder already exists under the
app's ``model/`` (with ``zoo_source github``). :func:`prepare_app` copies the sample app out of the
venv, adds three modules and points three imports of its ``main.py`` at them, and copies each
checked bundle in:

- :data:`APP_INFER_MODULE` (``lib/infers/sum_monai_bundle.py``): works around a MONAI 1.6 /
  MONAI Label 0.8.5 incompatibility (``Spacingd`` on NIfTI input);
- ``app_lib/sum_monai_app.py`` (``lib/sum_monai_app.py``): uploads to the local datastore are
  opened and checked (size of the label against its image, label values against the served
  bundles' labels) and refused with HTTP 422 before anything is stored;
- ``app_lib/sum_monai_train.py`` (``lib/trainers/sum_monai_bundle.py``): a failed training puts
  the served weights back, trainings are tracked in the MLflow server of ``--tracking-uri``, and
  each bundle trains on the studies of its own dimension.
"""

from __future__ import annotations

import filecmp
import logging
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from sum_monai.deploy.monailabel.checks import check_bundle
from sum_monai.errors import ConfigError
from sum_monai.utils.atomic import atomic_dir

logger = logging.getLogger(__name__)

#: The sample app that runs MONAI Bundles, relative to the venv (shipped in the wheel's data).
SAMPLE_APP = Path("monailabel") / "sample-apps" / "monaibundle"
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
#: The other imports of ``main.py`` that :func:`prepare_app` points at the modules of :data:`APP_MODULES`.
APP_BASE_IMPORT = (
    "from monailabel.interfaces.app import MONAILabelApp\n",
    "from lib.sum_monai_app import MONAILabelApp  # sum_monai: uploads checked, see that module\n",
)
APP_TRAIN_IMPORT = (
    "from monailabel.tasks.train.bundle import BundleTrainTask\n",
    "from lib.trainers.sum_monai_bundle import BundleTrainTask  # sum_monai: see that module\n",
)
APP_IMPORTS = (APP_IMPORT, APP_BASE_IMPORT, APP_TRAIN_IMPORT)
#: Modules written into the app: path in the app -> source file in ``app_lib/`` beside this module.
APP_MODULES = {
    "lib/sum_monai_app.py": "sum_monai_app.py",
    "lib/trainers/sum_monai_bundle.py": "sum_monai_train.py",
}
APP_LIB = Path(__file__).resolve().parent / "app_lib"
#: Bundle files and folders not copied into the app (run outputs, caches).
COPY_IGNORE = ("__pycache__", "*.pyc", "eval", "mlruns", "mlruns.db", ".pytest_cache")


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

    The app's ``main.py`` is the sample's with three imports changed (:data:`APP_IMPORTS`), to the
    modules described at the top of this module. Bundles
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
    for old, new in APP_IMPORTS:
        if old not in main:
            raise ConfigError(
                f"{source / 'main.py'} no longer has `{old.strip()}` as MONAI Label 0.8.5 did; "
                "the venv holds another MONAI Label: run `sum-monai monailabel setup --force`"
            )
        main = main.replace(old, new)
    for info in infos:
        _keep_trained(
            app / "model" / info.name / "models", info.path / "models", Path(workdir) / "trained" / info.name
        )
    with atomic_dir(app, overwrite=True) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*COPY_IGNORE))
        (tmp / "main.py").write_text(main)
        (tmp / "lib" / "infers" / "sum_monai_bundle.py").write_text(APP_INFER_MODULE)
        for target, name in APP_MODULES.items():
            (tmp / target).parent.mkdir(parents=True, exist_ok=True)
            (tmp / target).write_text((APP_LIB / name).read_text())
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
