"""Serve the project's MONAI Bundles through a MONAI Label server, offline.

MONAI Label 0.8.5 runs bundles through its ``monaibundle`` sample app, in its own virtual
environment. Serving takes four steps, one module each:

1. :mod:`.env`: create or reuse that environment (:func:`setup_env`, :func:`check_env`).
2. :mod:`.checks`: does a bundle have what MONAI Label reads (:func:`check_bundle`)? MONAI Label
   itself silently drops a bundle it cannot use from ``/info/``. :mod:`.envcheck` then builds the
   bundle's inference components inside the venv (:func:`check_bundles_in_env`): a script import
   the venv cannot satisfy would otherwise only show as HTTP 500 on ``/infer``.
3. :mod:`.app`: copy the sample app out of the venv and each bundle into ``<app>/model/<name>``,
   where the app finds it without downloading anything (:func:`prepare_app`).
4. :mod:`.server`: start ``monailabel start_server`` on 127.0.0.1, wait until it answers, stop it
   cleanly (:class:`MonaiLabelServer`).

The server itself, its REST API and the bundle inference are MONAI Label's; nothing here
re-implements them. See ``docs/monailabel.md`` for the user steps and the requirements on a bundle.

Example:
    >>> from sum_monai.deploy import monailabel as ml  # doctest: +SKIP
    >>> venv = ml.setup_env()  # doctest: +SKIP
    >>> app = ml.prepare_app(["bundles/breast_us_seg_2d"], "runs/monailabel", venv)  # doctest: +SKIP
    >>> with ml.MonaiLabelServer(venv, app, "runs/monailabel/studies", ["breast_us_seg_2d"]) as srv:
    ...     print(srv.wait_ready()["models"].keys())  # doctest: +SKIP
"""

from sum_monai.deploy.monailabel.app import (
    APP_IMPORT,
    APP_IMPORTS,
    APP_INFER_MODULE,
    APP_MODULES,
    COPY_IGNORE,
    SAMPLE_APP,
    prepare_app,
    sample_app,
)
from sum_monai.deploy.monailabel.checks import RESERVED_NAME_WORDS, BundleInfo, check_bundle
from sum_monai.deploy.monailabel.env import (
    DEFAULT_VENV_NAME,
    MONAILABEL_PINS,
    TORCH_PINS,
    VENV_ENV_VAR,
    check_env,
    clean_env,
    default_venv,
    setup_env,
    venv_python,
)
from sum_monai.deploy.monailabel.envcheck import check_bundles_in_env, env_problems
from sum_monai.deploy.monailabel.server import MonaiLabelServer, free_port, server_command

__all__ = [
    "APP_IMPORT",
    "APP_IMPORTS",
    "APP_INFER_MODULE",
    "APP_MODULES",
    "COPY_IGNORE",
    "DEFAULT_VENV_NAME",
    "MONAILABEL_PINS",
    "RESERVED_NAME_WORDS",
    "SAMPLE_APP",
    "TORCH_PINS",
    "VENV_ENV_VAR",
    "BundleInfo",
    "MonaiLabelServer",
    "check_bundle",
    "check_bundles_in_env",
    "check_env",
    "clean_env",
    "default_venv",
    "env_problems",
    "free_port",
    "prepare_app",
    "sample_app",
    "server_command",
    "setup_env",
    "venv_python",
]
