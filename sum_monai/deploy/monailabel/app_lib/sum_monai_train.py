"""MONAI Label's BundleTrainTask: served weights kept on failure, one MLflow server, mixed studies.

Written by sum_monai into the app as ``lib/trainers/sum_monai_bundle.py`` (see
``sum_monai.deploy.monailabel.prepare_app``); the app's ``main.py`` imports ``BundleTrainTask``
from here instead of from MONAI Label. Runs inside MONAI Label's environment (no sum_monai there).
Changes to MONAI Label 0.8.5's task:

- **A training that fails leaves the served weights as they were.** The bundle replaces
  ``models/model.pt`` whenever validation improves, so a training that dies in epoch 3 would
  leave epoch 2's weights being served; the file is copied before and put back on failure.
- **A retrained ensemble serves the new network alone.** A bundle shipped by ``sum-monai cv``
  serves ``model.pt`` with the other fold members ``models/fold*.pt`` (``scripts.ensemble``); a
  training replaces ``model.pt`` only, so serving it would average one new network with stale
  ones. The members are moved to ``models/ensemble-before-training/`` while it trains, to
  ``models/ensemble-replaced-<time>/`` with the former ``model.pt`` (kept whole, not served)
  when it succeeds, back when it fails.
- **Tracking in one MLflow server.** With the app setting ``tracking_uri`` (``sum-monai
  monailabel serve --tracking-uri URI``) every training is tracked there unless the request says
  ``"tracking": "None"``: experiment = the bundle name (as ``sum-monai train``), run name
  ``monailabel-<bundle>-<time>`` (MONAI's handler would otherwise continue *any* unfinished run
  of the experiment, e.g. a colleague's), epoch metrics, parameters ``trained_by=monailabel``,
  and the bundle's ``scripts.tracking.GuardedMLFlowHandler`` when it has one (a server that goes
  away does not stop the training). A failed training's run is ended as FAILED.
- **Mixed studies.** A studies folder may hold 2D images (PNG) and volumes (NIfTI); each bundle
  trains on the labelled images of its own dimension only.
- ``"pretrained": false`` (train from scratch) works: MONAI Label 0.8.5 calls
  ``os.path.exists(None)`` there.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import time
from typing import Any

from monailabel.tasks.train.bundle import BundleTrainTask as _BundleTrainTask

logger = logging.getLogger(__name__)

FLAT_ENDINGS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_IS_NOT_RANK0 = (
    "$torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank() > 0"
)


def tracking_settings(uri: str, experiment: str, run_name: str, guarded: bool, params: dict[str, str]) -> dict:
    """MONAI tracking settings: trainer and validator of one run, epoch metrics, the executed config."""

    def handler(role: str, **kwargs: Any) -> dict[str, Any]:
        out = {
            "_target_": "scripts.tracking.GuardedMLFlowHandler" if guarded else "MLFlowHandler",
            "_disabled_": "@is_not_rank0", "tracking_uri": uri, "experiment_name": experiment,
            "run_name": run_name, "iteration_log": False, "epoch_log": True, **kwargs,
        }  # fmt: skip
        if guarded:
            out["unsent_file"] = f"$@output_dir + '/mlflow_unsent_{role}.json'"
        return out

    return {
        "handlers_id": {
            "trainer": {"id": "train#trainer", "handlers": "train#handlers"},
            "validator": {"id": "validate#evaluator", "handlers": "validate#handlers"},
        },
        "configs": {
            "is_not_rank0": _IS_NOT_RANK0,
            "save_execute_config": True,
            "trainer": handler("train", experiment_param=params, artifacts="@save_execute_config", close_on_complete=True),
            "validator": handler("validate"),
        },
    }


class BundleTrainTask(_BundleTrainTask):
    """MONAI Label's ``BundleTrainTask`` with the changes listed in the module docstring."""

    def __init__(self, path: str, conf: dict[str, str], *args: Any, **kwargs: Any) -> None:
        self.default_tracking_uri = str(conf.get("tracking_uri", "") or "")
        kwargs.setdefault("enable_tracking", bool(self.default_tracking_uri))
        super().__init__(path, conf, *args, **kwargs)
        self._run: tuple[str, str, str] | None = None  # (tracking URI, run name, experiment) of this training

    @property
    def weights(self) -> str:
        return os.path.join(self.bundle_path, "models", "model.pt")

    def config(self) -> dict[str, Any]:
        out = super().config()
        if self.default_tracking_uri:
            out["tracking_uri"] = self.default_tracking_uri
        return out

    def dimension(self) -> int:
        import json

        with open(self.bundle_metadata_path) as f:
            meta = json.load(f)
        shape = meta.get("network_data_format", {}).get("inputs", {}).get("image", {}).get("spatial_shape")
        return len(shape) if shape else 3

    def _fetch_datalist(self, request: dict, datastore: Any) -> list[dict]:
        flat = self.dimension() == 2
        records = super()._fetch_datalist(request, datastore)
        kept = [r for r in records if str(r["image"]).lower().endswith(FLAT_ENDINGS) == flat]
        if len(kept) < len(records):
            logger.info(f"{len(records) - len(kept)} labelled image(s) of another dimension left out of this training")
        return kept

    def _load_checkpoint(self, model_pytorch: str, pretrained: bool, train_handlers: list) -> None:
        if pretrained:  # MONAI Label 0.8.5: os.path.exists(None) raises when pretrained is false
            super()._load_checkpoint(model_pytorch, pretrained, train_handlers)

    def __call__(self, request: dict, datastore: Any) -> Any:
        request = dict(request)
        if self.default_tracking_uri and not request.get("tracking_uri"):
            request["tracking_uri"] = self.default_tracking_uri
        backup = None
        if os.path.isfile(self.weights):
            backup = f"{self.weights}.before-training"
            shutil.copy2(self.weights, backup)
        members = self._members_aside()
        self._run = None
        try:
            result = super().__call__(request, datastore)
        except BaseException:
            if backup:
                os.replace(backup, self.weights)  # atomic: the served file is whole at every moment
                logger.error(f"training failed: {self.weights} put back as it was before the training")
            self._members_back(members)
            self._end_run("FAILED")
            raise
        if members:  # the former ensemble stays whole (its model.pt too), unserved
            kept = os.path.join(os.path.dirname(members), f"ensemble-replaced-{time.strftime('%Y%m%d-%H%M%S')}")
            if backup:
                os.replace(backup, os.path.join(members, "model.pt"))
            os.replace(members, kept)
            logger.info(f"the retrained model.pt is served alone; the former ensemble is kept in {kept}")
        elif backup:
            os.remove(backup)
        return result

    def _members_aside(self) -> str | None:
        """Move the other ensemble members (``models/fold*.pt``) out of the served folder; their folder."""
        found = sorted(glob.glob(os.path.join(os.path.dirname(self.weights), "fold*.pt")))
        if not found:
            return None
        aside = os.path.join(os.path.dirname(self.weights), "ensemble-before-training")
        os.makedirs(aside, exist_ok=True)
        for path in found:
            os.replace(path, os.path.join(aside, os.path.basename(path)))
        logger.info(f"{len(found)} ensemble member(s) moved to {aside} while model.pt is retrained")
        return aside

    def _members_back(self, aside: str | None) -> None:
        """Put the members moved by :meth:`_members_aside` back beside ``model.pt`` (a failed training)."""
        if not aside:
            return
        for name in sorted(os.listdir(aside)):
            os.replace(os.path.join(aside, name), os.path.join(os.path.dirname(self.weights), name))
        os.rmdir(aside)
        logger.error(f"training failed: the ensemble members are served again from {os.path.dirname(self.weights)}")

    def _update_overrides(self, overrides: dict) -> dict:
        tracking = overrides.get(self.const.key_tracking())
        if isinstance(tracking, str) and tracking.lower() == "mlflow":
            name = os.path.basename(os.path.normpath(self.bundle_path))
            uri = overrides.get(self.const.key_tracking_uri()) or self.default_tracking_uri or os.environ.get(
                "MLFLOW_TRACKING_URI", ""
            )
            experiment = overrides.get(self.const.key_experiment_name()) or name
            run_name = overrides.get(self.const.key_run_name()) or f"monailabel-{name}-{time.strftime('%Y%m%d-%H%M%S')}"
            guarded = os.path.isfile(os.path.join(self.bundle_path, "scripts", "tracking.py"))
            params = {
                "trained_by": "monailabel",
                "bundle_version": str(self.version),
                "n_train": str(len(overrides.get(self.const.key_train_dataset_data()) or [])),
                "n_validation": str(len(overrides.get(self.const.key_validate_dataset_data()) or [])),
            }
            if uri:
                overrides[self.const.key_tracking()] = tracking_settings(uri, experiment, run_name, guarded, params)
                self._run = (uri, run_name, experiment)
                logger.info(f"training tracked in {uri}: experiment {experiment!r}, run {run_name!r}")
        return overrides

    def _end_run(self, status: str) -> None:
        """End the tracked run of a training that failed (MONAI's handler leaves it RUNNING)."""
        if not self._run:
            return
        uri, run_name, experiment = self._run
        try:
            import mlflow

            client = mlflow.MlflowClient(tracking_uri=uri)
            exp = client.get_experiment_by_name(experiment)
            runs = client.search_runs([exp.experiment_id], f"attributes.run_name = '{run_name}'") if exp else []
            for run in runs:
                client.set_terminated(run.info.run_id, status)
        except Exception as err:  # the training's own error matters more
            logger.warning(f"could not mark MLflow run {run_name!r} {status}: {err}")
