"""MONAI experiment-tracking settings that put a bundle workflow into one MLflow run.

MONAI patches ``MLFlowHandler`` into a bundle's trainer / evaluator from a settings dict (see
``monai.bundle.utils.DEFAULT_MLFLOW_SETTINGS``); these are ours: our store, one experiment per
bundle, a run name we choose (so ``--resume`` continues the same run), the recipe as parameters and
epoch-level metrics only (the learning curve). The handler is the bundle's own
``scripts.tracking.GuardedMLFlowHandler`` (MONAI's, guarded: a tracking server that goes away
mid-run never stops the training; what it missed waits in ``<output_dir>/mlflow_unsent_*.json``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from monai.handlers import MLFlowHandler


class ResumableMLFlowHandler(MLFlowHandler):
    """MONAI's ``MLFlowHandler`` that logs each metric at most once per step of a run.

    Why: a training killed after it logged an epoch but before that epoch's checkpoint was
    written trains the epoch again when resumed, and MONAI's handler would log its step a second
    time with other values (MLflow cannot delete a logged value). This handler reads which
    (metric, step) pairs the run already holds when it starts and skips those; the first value
    logged for a step stays. Bundles carrying ``scripts/tracking.py`` get the same from
    ``GuardedMLFlowHandler``; this one serves bundles copied before it existed.
    """

    def start(self, engine: Any) -> None:
        super().start(engine)
        self._logged: set[tuple[str, int]] = set()
        if self.cur_run is not None:
            run = self.client.get_run(self.cur_run.info.run_id)
            for key in run.data.metrics:
                for m in self.client.get_metric_history(self.cur_run.info.run_id, key):
                    self._logged.add((m.key, int(m.step)))

    def _log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        from monai.utils import flatten_dict

        logged = getattr(self, "_logged", set())
        fresh = {k: v for k, v in flatten_dict(metrics).items() if (k, int(step or 0)) not in logged}
        if fresh:
            super()._log_metrics(fresh, step)
            logged.update((k, int(step or 0)) for k in fresh)


_IS_NOT_RANK0 = (
    "$torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank() > 0"
)


#: The handler class, from the bundle's shared scripts (``sum_monai/bundle/bundle_scripts/tracking.py``).
HANDLER = "scripts.tracking.GuardedMLFlowHandler"
#: File name pattern of what a handler could not send yet, in the workflow's ``output_dir``.
UNSENT_GLOB = "mlflow_unsent_*.json"
#: The handler of bundles without ``scripts/tracking.py`` (importable by ``monai.bundle run`` under torchrun too).
FALLBACK_HANDLER = f"{__name__}.ResumableMLFlowHandler"


def has_guard(bundle_root: str | Path) -> bool:
    """Whether a bundle carries ``scripts/tracking.py`` (bundles copied before it existed do not)."""
    return (Path(bundle_root) / "scripts" / "tracking.py").is_file()


def _handler(uri: str, experiment: str, run_name: str, role: str, guarded: bool, **kwargs: Any) -> dict[str, Any]:
    guard = {"_target_": HANDLER, "unsent_file": f"$@output_dir + '/mlflow_unsent_{role}.json'"}
    return {
        **(guard if guarded else {"_target_": FALLBACK_HANDLER}),
        "_disabled_": "@is_not_rank0",
        "tracking_uri": uri,
        "experiment_name": experiment,
        "run_name": run_name,
        **kwargs,
    }


def mlflow_settings(
    workflow: str,
    uri: str,
    experiment: str,
    run_name: str,
    params: dict[str, str],
    config_snapshot: str | None = None,
    guarded: bool = True,
) -> dict[str, Any]:
    """Tracking settings for ``ConfigWorkflow(tracking=...)``.

    Args:
        workflow: ``train``, ``multi_gpu_train`` or ``evaluate``.
        uri: MLflow tracking URI.
        experiment: experiment name (the bundle name).
        run_name: the MLflow run name; a run of that name that is not finished is continued.
        params: parameters logged when the run starts (see :func:`sum_monai.tracking.params.config_params`).
        config_snapshot: file where MONAI writes the executed config, logged as an artifact
            (default: a time-stamped file in the workflow's ``output_dir``).
        guarded: use the bundle's ``scripts.tracking.GuardedMLFlowHandler`` (see :func:`has_guard`);
            ``False``: :class:`ResumableMLFlowHandler` (MONAI's, each step once), which stops the
            training when the server is away.
    """
    configs: dict[str, Any] = {"is_not_rank0": _IS_NOT_RANK0, "save_execute_config": config_snapshot or True}
    if workflow in ("train", "multi_gpu_train"):
        handlers_id = {
            "trainer": {"id": "train#trainer", "handlers": "train#handlers"},
            "validator": {"id": "validate#evaluator", "handlers": "validate#handlers"},
        }
        configs["trainer"] = _handler(
            uri, experiment, run_name, "train", guarded,
            iteration_log=False, epoch_log=True, experiment_param=params, artifacts="@save_execute_config",
            optimizer_param_names="lr", close_on_complete=True,
        )  # fmt: skip
        configs["validator"] = _handler(uri, experiment, run_name, "validate", guarded, iteration_log=False, epoch_log=True)
    elif workflow == "evaluate":
        handlers_id = {"evaluator": {"id": "validate#evaluator", "handlers": "validate#handlers"}}
        configs["evaluator"] = _handler(
            uri, experiment, run_name, "evaluate", guarded,
            iteration_log=False, epoch_log=True, experiment_param=params, artifacts="@save_execute_config",
            close_on_complete=True,
        )  # fmt: skip
    else:
        raise ValueError(f"no tracking settings for workflow {workflow!r}")
    return {"handlers_id": handlers_id, "configs": configs}
