"""``sum-monai monailabel``: serve bundles to annotators through a MONAI Label server.

``setup`` creates MONAI Label's own virtual environment (it cannot share the project's: it needs
pydicom<3 and torch 2.14.1 with PyPI torchvision); ``serve`` prepares an app folder with the given
bundles and runs the server on 127.0.0.1 until Ctrl-C. The work is done in
:mod:`sum_monai.deploy.monailabel`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

DESCRIPTION = """\
Serve MONAI Bundles through MONAI Label 0.8.5 (its `monaibundle` app), offline.

  sum-monai monailabel setup                      # once: creates .venv-monailabel (~4 min, ~8 GB)
  sum-monai monailabel serve --bundle bundles/breast_us_seg_2d --studies data/us_studies
  sum-monai monailabel check --bundle bundles/breast_mri_seg_3d [--in-env]

The environment is .venv-monailabel beside the repository's .venv, or $SUM_MONAI_MONAILABEL_VENV,
or --venv. See docs/monailabel.md for the REST calls and the requirements on a bundle.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``monailabel`` with its ``setup``, ``check`` and ``serve`` actions."""
    parser = subparsers.add_parser(
        "monailabel",
        help="serve bundles through a MONAI Label server (setup / check / serve)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="<action>", required=True)

    setup = actions.add_parser(
        "setup", help="create or reuse MONAI Label's virtual environment", description=_setup.__doc__
    )
    _add_venv(setup)
    setup.add_argument(
        "--force", action="store_true", help="run the pip installs even if the environment works"
    )
    setup.set_defaults(func=_setup)

    check = actions.add_parser(
        "check", help="check bundles for what MONAI Label needs", description=_check.__doc__
    )
    _add_bundles(check)
    _add_venv(check)
    check.add_argument(
        "--in-env",
        action="store_true",
        help="also build each bundle's inference config inside the MONAI Label venv (script imports, "
        "weights against network_def); `serve` always does this",
    )
    check.set_defaults(func=_check)

    serve = actions.add_parser(
        "serve",
        help="prepare an app folder with the bundles and start the server",
        description=_serve.__doc__,
    )
    _add_bundles(serve)
    _add_venv(serve)
    serve.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    serve.add_argument(
        "--host", default="127.0.0.1", help="listening address (default 127.0.0.1: this machine only)"
    )
    serve.add_argument(
        "--studies",
        default=None,
        help="studies folder (images to annotate; default <workdir>/studies) or a DICOMweb URL",
    )
    serve.add_argument(
        "--workdir",
        type=Path,
        default=Path("runs/monailabel"),
        help="where the app folder goes (default runs/monailabel)",
    )
    serve.add_argument(
        "--train", action="store_true", help="offer POST /train/{model} for bundles with configs/train.json"
    )
    serve.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking server (or store) where every training through MONAI Label is tracked, as "
        "`sum-monai train` runs are (default: $MLFLOW_TRACKING_URI; neither: trainings are not tracked)",
    )
    serve.set_defaults(func=_serve)


def _add_venv(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--venv",
        type=Path,
        default=None,
        help="MONAI Label venv (default $SUM_MONAI_MONAILABEL_VENV or .venv-monailabel)",
    )


def _add_bundles(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bundle",
        type=Path,
        action="append",
        required=True,
        help="bundle folder (repeat for several bundles)",
    )


def _setup(args: argparse.Namespace) -> int:
    """Create MONAI Label's virtual environment (reused when it already works) and check it imports."""
    from sum_monai.deploy.monailabel import setup_env

    setup_env(args.venv, force=args.force)
    return 0


def _check(args: argparse.Namespace) -> int:
    """Check that each bundle has what MONAI Label reads; print what it will serve.

    With --in-env, also build each bundle's preprocessing, inferer, postprocessing and network (with
    its weights) inside the MONAI Label venv, as the server will.
    """
    from sum_monai.deploy.monailabel import check_bundle, check_bundles_in_env, default_venv

    for bundle in args.bundle:
        info = check_bundle(bundle)
        labels = ", ".join(f"{k}={v}" for k, v in info.labels.items())
        print(f"{info.name}: {info.dimension}D, labels {labels}, weights {info.weights.name}"
              f"{', trainable' if info.trainable else ''}")  # fmt: skip
    if args.in_env:
        venv = args.venv or default_venv()
        check_bundles_in_env(args.bundle, venv)
        print(f"all {len(args.bundle)} bundle(s) build in MONAI Label's environment {venv}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    """Copy MONAI Label's monaibundle app and the bundles into <workdir>/app and run the server until Ctrl-C."""
    from sum_monai.deploy.monailabel import MonaiLabelServer, check_bundles_in_env, default_venv, prepare_app

    venv = args.venv or default_venv()
    app = prepare_app(args.bundle, args.workdir, venv)
    models = [Path(b).absolute().name for b in args.bundle]
    print(f"checking {', '.join(models)} in MONAI Label's environment {venv}", flush=True)
    # MONAI Label would list a bundle whose scripts fail to import and answer its /infer with HTTP 500
    check_bundles_in_env([app / "model" / m for m in models], venv)
    studies = args.studies or str(args.workdir / "studies")
    tracking = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None
    server = MonaiLabelServer(
        venv, app, studies, models, port=args.port, host=args.host, train=args.train, tracking_uri=tracking
    )
    # SIGTERM (kill, a service manager) must stop the server too: it runs in its own session
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    server.start()
    try:
        info = server.wait_ready()
        print(f"MONAI Label serving {', '.join(info.get('models', {}))} at {server.url} (studies: {studies}); "
              "Ctrl-C stops it", flush=True)  # fmt: skip
        assert server.proc is not None
        return int(server.proc.wait())
    except KeyboardInterrupt:
        server.stop()
        return 0
    finally:
        server.stop()
