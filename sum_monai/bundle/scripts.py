"""Import a bundle's own ``scripts/`` package from the package side.

Bundle configs refer to their custom code as ``scripts.<module>.<name>``; MONAI puts the bundle
root on ``sys.path`` when it runs a bundle. Every bundle names that package ``scripts``, so the
package imports it under a unique name instead (``sum_monai_bundle_scripts.<bundle>``), which lets
one process use several bundles' scripts side by side (tests, prediction, reports).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from sum_monai.errors import ConfigError

_PREFIX = "sum_monai_bundle_scripts"


def import_bundle_scripts(bundle_dir: str | Path, module: str | None = None) -> ModuleType:
    """Return ``<bundle_dir>/scripts`` (or its submodule ``module``) as an imported module.

    Args:
        bundle_dir: the bundle folder (the one holding ``configs/`` and ``scripts/``).
        module: optional submodule of ``scripts`` to return, e.g. ``"mammo"``.

    Raises:
        ConfigError: if the bundle has no ``scripts/__init__.py``.

    Example:
        >>> mammo = import_bundle_scripts("bundles/mammo_seg_2d", "mammo")  # doctest: +SKIP
        >>> reader = mammo.MammoDicomReader()  # doctest: +SKIP
    """
    bundle_dir = Path(bundle_dir).resolve()
    init = bundle_dir / "scripts" / "__init__.py"
    if not init.is_file():
        raise ConfigError(f"{bundle_dir}: bundle has no scripts/__init__.py")
    name = f"{_PREFIX}.{bundle_dir.name}"
    if _PREFIX not in sys.modules:
        root = ModuleType(_PREFIX)
        root.__path__ = []
        sys.modules[_PREFIX] = root
    pkg = sys.modules.get(name)
    if pkg is None or Path(getattr(pkg, "__file__", "")).resolve() != init:
        spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(init.parent)])
        assert spec is not None and spec.loader is not None
        pkg = importlib.util.module_from_spec(spec)
        sys.modules[name] = pkg
        spec.loader.exec_module(pkg)
    if module is None:
        return pkg
    return importlib.import_module(f"{name}.{module}")
