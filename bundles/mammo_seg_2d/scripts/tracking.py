"""MONAI's ``MLFlowHandler`` guarded against a tracking server that goes away (``scripts.tracking``).

Why not plain ``monai.handlers.MLFlowHandler``: it calls the MLflow client inside Ignite events,
and the client retries a refused connection for about four minutes and then raises. A tracking
server restarted or unreachable in the middle of a training therefore first stalls and then kills
the trainer inside ``EPOCH_COMPLETED``, before the checkpoint handlers of that epoch have run.
:class:`GuardedMLFlowHandler` keeps the handler's role and makes three changes:

- every call to the server is made with short retries (``request_retries``, ``request_timeout``,
  unless the user set ``MLFLOW_HTTP_REQUEST_*``), so an unreachable server costs seconds;
- what the server did not take (the run start and its parameters, metrics with their own epoch
  and time, artifacts, the end of the run) is kept in memory and in ``unsent_file`` (JSON), and
  sent at the next event, so training goes on and its checkpoints are written;
- once the server answers again, the metrics are sent with their original steps and times and the
  run gets the tag ``tracking.late_epochs`` (``"2-3"``) and a note, so its history is complete
  and says what arrived late. If the run ends while the server is still away, a warning names the
  epochs whose metrics are only in the local log and in ``unsent_file``; :func:`send_unsent`
  delivers them later (``sum-monai train --resume`` does).

Errors that do not mean "the server is unreachable" (a rejected parameter, a deleted experiment)
are raised as before.

This file is synced from ``sum_monai/bundle/bundle_scripts/tracking.py``; edit it there.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

from monai.handlers import MLFlowHandler
from monai.utils import flatten_dict

__all__ = ["GuardedMLFlowHandler", "is_unreachable", "quick_requests", "send_unsent"]

logger = logging.getLogger(__name__)

#: Tag naming the epochs whose metrics reached the server late (after an outage).
LATE_TAG = "tracking.late_epochs"
#: Tag explaining the late metrics in words.
NOTE_TAG = "tracking.note"
#: MLflow accepts at most 1000 metrics per ``log_batch``.
_BATCH = 1000
#: The guarded handlers alive in this process (the trainer's, the validator's): the one that ends
#: the run first sends what the others still hold (the validator has no event after its last epoch).
_LIVE: weakref.WeakSet = weakref.WeakSet()


def is_unreachable(err: BaseException) -> bool:
    """Whether ``err`` from the MLflow client means the tracking server did not answer.

    True for refused or timed-out connections and for 5xx / 429 answers after MLflow's retries;
    False for errors the server itself returned about the request (bad parameter, missing run).
    """
    if isinstance(err, OSError):  # ConnectionError, TimeoutError, requests.RequestException
        return True
    message = str(err)
    if "API request to" in message and "failed with" in message:
        return True  # mlflow.utils.rest_utils.http_request: connection refused, max retries, timeout
    if type(err).__name__ == "RestException":  # the server answered, with an error of its own
        return err.get_http_status_code() in (429, 500, 502, 503, 504)
    return False


@contextlib.contextmanager
def quick_requests(retries: int = 2, timeout: int | None = 30) -> Iterator[None]:
    """Short MLflow HTTP retries inside the block (MLflow's default retries for ~4 min).

    Variables the user has set (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, ``..._BACKOFF_FACTOR``,
    ``..._TIMEOUT``) are left as they are; ``timeout=None`` keeps MLflow's request timeout.
    """
    wanted = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(int(retries)), "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
    if timeout is not None:
        wanted["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(int(timeout))
    added = [k for k in wanted if k not in os.environ]
    for key in added:
        os.environ[key] = wanted[key]
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def epoch_ranges(steps: Any) -> str:
    """``{2, 3, 5}`` -> ``"2-3, 5"``."""
    out: list[str] = []
    for step in sorted({int(s) for s in steps}):
        if out and "-" not in out[-1] and int(out[-1]) == step - 1:
            out[-1] = f"{out[-1]}-{step}"
        elif out and "-" in out[-1] and int(out[-1].split("-")[1]) == step - 1:
            out[-1] = f"{out[-1].split('-')[0]}-{step}"
        else:
            out.append(str(step))
    return ", ".join(out)


def parse_ranges(text: str | None) -> set[int]:
    """``"2-3, 5"`` -> ``{2, 3, 5}`` (the inverse of :func:`epoch_ranges`)."""
    out: set[int] = set()
    for part in (text or "").split(","):
        first, _, last = part.strip().partition("-")
        if first.isdigit():
            out.update(range(int(first), int(last if last.isdigit() else first) + 1))
    return out


def _write_json(path: str, content: Mapping[str, Any]) -> None:
    """Write ``content`` to ``path`` atomically (temporary file + ``os.replace``)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(content, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _tag_late(client: Any, run_id: str, late: Any, down_since: float | None, back: bool) -> set[int]:
    """Tag the run with the late epochs, merged with those another handler of the run tagged."""
    late = set(late) | parse_ranges(client.get_run(run_id).data.tags.get(LATE_TAG))
    for key, value in _late_tags(late, down_since, back).items():
        client.set_tag(run_id, key, value)
    return late


def _late_tags(late: Any, down_since: float | None, back: bool) -> dict[str, str]:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(down_since)) if down_since else "?"
    when = "when it answered again" if back else "later from the local file of unsent metrics"
    return {
        LATE_TAG: epoch_ranges(late),
        NOTE_TAG: f"the tracking server did not answer from {since}; the metrics of epochs "
        f"{epoch_ranges(late)} were kept by the training and sent {when}, with their original epochs and times",
    }


class GuardedMLFlowHandler(MLFlowHandler):
    """``MLFlowHandler`` that keeps training going while the tracking server is away.

    Takes every argument of :class:`monai.handlers.MLFlowHandler`, and:

    Args:
        unsent_file: JSON file holding what the server has not taken yet (written while something
            is pending, removed once all is sent); ``None`` keeps it in memory only. Give each
            handler of a workflow its own file (trainer and validator).
        request_retries: HTTP retries of each call to the server (MLflow's default is 7, ~4 min).
        request_timeout: seconds each HTTP request may take.
        retry_interval: while the server is away, seconds between two tries (the events in
            between only queue); the end of the run always tries.

    Example:
        Tracking settings for ``monai.bundle run --tracking settings.json``::

            {"handlers_id": {"trainer": {"id": "train#trainer", "handlers": "train#handlers"}},
             "configs": {"trainer": {"_target_": "scripts.tracking.GuardedMLFlowHandler",
                                     "tracking_uri": "http://127.0.0.1:5000", "epoch_log": true,
                                     "iteration_log": false, "close_on_complete": true,
                                     "unsent_file": "$@output_dir + '/mlflow_unsent_train.json'"}}}
    """

    def __init__(
        self,
        *args: Any,
        unsent_file: str | None = None,
        request_retries: int = 2,
        request_timeout: int = 30,
        retry_interval: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.unsent_file = str(unsent_file) if unsent_file else None
        self.request_retries, self.request_timeout = int(request_retries), int(request_timeout)
        self.retry_interval = float(retry_interval)
        self._last_try = 0.0
        self._engine: Any = None
        self._started = False
        self._metrics: list[Any] = []  # mlflow.entities.Metric not yet sent
        self._artifacts: list[str] = []
        self._close = False  # the run has ended; the server has not been told yet
        self._logged: set[tuple[str, int]] = set()  # (metric, step) the run holds
        self._late: set[int] = set()  # epochs whose metrics waited for the server
        self._down_since: float | None = None
        self._tracking_uri = str(getattr(self.client, "tracking_uri", "") or "")
        self._params: dict[str, str] = {}  # parameters of a run that never reached the server
        self._adopt_unsent()
        _LIVE.add(self)

    def _adopt_unsent(self) -> None:
        """Take over what an earlier process of the same run left unsent (a resumed training).

        A file of another run is renamed aside (``..._train-<time>.json``) so nothing overwrites it.
        """
        if not self.unsent_file or not os.path.isfile(self.unsent_file):
            return
        try:
            with open(self.unsent_file) as f:
                old = json.load(f)
            same = (old.get("run_name"), old.get("experiment_name")) == (self.run_name, self.experiment_name)
        except (OSError, ValueError):
            old, same = {}, False
        if not same:
            os.replace(self.unsent_file, f"{self.unsent_file[: -len('.json')]}-{time.strftime('%Y%m%d-%H%M%S')}.json")
            return
        import mlflow

        self._metrics = [
            mlflow.entities.Metric(m["key"], m["value"], m["timestamp"], m["step"]) for m in old["metrics"]
        ]
        self._artifacts = [a for a in old.get("artifacts", []) if os.path.exists(a)]
        self._late = set(old.get("late_epochs", []))
        self._down_since = old.get("down_since") or time.time()
        self._params = dict(old.get("params", {}))

    # -- the events ------------------------------------------------------------------------------

    def start(self, engine: Any) -> None:
        """Start (or find) the run as MONAI does; if the server is away, do it at the next event."""
        self._engine = engine
        self._flush()

    def _log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Queue the metrics with their step and the time now, then send what is queued."""
        import mlflow

        stamp = int(time.time() * 1000)
        self._metrics += [
            mlflow.entities.Metric(key, float(value), stamp, step or 0) for key, value in flatten_dict(metrics).items()
        ]
        self._flush()

    def complete(self) -> None:
        """Log the artifacts (MONAI's ``complete``), through the queue."""
        self._artifacts += [a for a in self._parse_artifacts() if a not in self._artifacts] if self.artifacts else []
        self._flush()

    def close(self) -> None:
        """End the run once everything is sent; otherwise warn which epochs are only local.

        What the other guarded handlers of the run still hold (the validator's last epochs) is
        sent first, so that the run ends complete.
        """
        self._close = True
        others = [
            h
            for h in list(_LIVE)
            if h is not self and (h.run_name, h._tracking_uri) == (self.run_name, self._tracking_uri)
        ]
        for other in others:
            if other._metrics or other._artifacts:
                other._flush(force=True)
        if not self._flush(force=True):
            pending = [m for h in (self, *others) for m in h._metrics]
            keys = sorted({m.key for m in pending})
            files = [
                h.unsent_file for h in (self, *others) if h.unsent_file and (h._metrics or h._artifacts or h is self)
            ]
            where = f" and in {', '.join(files)}" if files else ""
            logger.warning(
                "MLflow tracking server %s did not answer at the end of run %r: the metrics of epochs %s (%s) are only "
                "in the training log%s; the run stays RUNNING on the server until they are sent (`sum-monai train "
                "--resume` sends them, or scripts.tracking.send_unsent). The checkpoints are not affected.",
                self._tracking_uri, self.run_name, epoch_ranges(m.step for m in pending) or "-",
                ", ".join(keys) or "no metrics", where,
            )  # fmt: skip
        self._dispose_sqlite_store()

    # -- sending ---------------------------------------------------------------------------------

    def _flush(self, force: bool = False) -> bool:
        """Send everything queued; return whether the server took it all.

        While the server is away, a try is made at most every ``retry_interval`` seconds unless ``force``.
        """
        if self._down_since is not None and not force and time.time() - self._last_try < self.retry_interval:
            self._late.update(int(m.step) for m in self._metrics)
            self._save_unsent()
            return False
        self._last_try = time.time()
        try:
            with quick_requests(self.request_retries, self.request_timeout):
                if not self._started:
                    if self._engine is None:
                        return False  # not started yet: nothing can be sent before STARTED
                    super().start(self._engine)
                    self._started = True
                    self._logged = self._steps_on_server()
                if self.cur_run is None:  # ended already
                    return True
                run_id = self.cur_run.info.run_id
                if self._params:  # those of an earlier process that never reached the server
                    self._log_params(
                        {k: v for k, v in self._params.items() if k not in self.client.get_run(run_id).data.params}
                    )
                    self._params = {}
                # a resumed training repeats the epochs after its last checkpoint: each (metric, step) is logged once, the first value stays
                self._metrics = [m for m in self._metrics if (m.key, int(m.step)) not in self._logged]
                while self._metrics:
                    self.client.log_batch(run_id, metrics=self._metrics[:_BATCH], params=[], tags=[])
                    self._logged.update(
                        (m.key, int(m.step)) for m in self._metrics[:_BATCH]
                    )  # only once the server has them
                    del self._metrics[:_BATCH]
                while self._artifacts:
                    self.client.log_artifact(run_id, self._artifacts[0])
                    del self._artifacts[0]
                if self._down_since is not None:
                    _tag_late(self.client, run_id, self._late, self._down_since, back=True)
                    logger.warning(
                        "MLflow tracking server %s answers again: the metrics of epochs %s were sent late and the run "
                        "is tagged %s=%s", self._tracking_uri, epoch_ranges(self._late), LATE_TAG, epoch_ranges(self._late),
                    )  # fmt: skip
                    self._down_since = None
                if self._close and self.cur_run is not None:
                    self.client.set_terminated(run_id, self.run_finish_status)
                    self.cur_run = None
        except Exception as err:
            if not is_unreachable(err):
                raise
            self._went_away(err)
            return False
        self._save_unsent()
        return True

    def _steps_on_server(self) -> set[tuple[str, int]]:
        """The (metric, step) pairs the run already holds (a continued run: an earlier process logged them)."""
        if self.cur_run is None:
            return set()
        run_id = self.cur_run.info.run_id
        keys = self.client.get_run(run_id).data.metrics
        return {(m.key, int(m.step)) for key in keys for m in self.client.get_metric_history(run_id, key)}

    def _went_away(self, err: BaseException) -> None:
        """Remember what waits for the server, on disk too; warn once per outage."""
        self._late.update(int(m.step) for m in self._metrics)
        if self._down_since is None:
            self._down_since = time.time()
            logger.warning(
                "MLflow tracking server %s does not answer (%s); training goes on, its metrics are kept and sent when "
                "the server answers again%s", self._tracking_uri, str(err).splitlines()[0][:300],
                f" (meanwhile in {self.unsent_file})" if self.unsent_file else "",
            )  # fmt: skip
        self._save_unsent()

    def _save_unsent(self) -> None:
        """Write the queue to ``unsent_file`` (atomically), or remove the file when nothing waits."""
        if not self.unsent_file:
            return
        pending = self._metrics or self._artifacts or not self._started or (self._close and self.cur_run is not None)
        if not pending:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.unsent_file)
            return
        engine = self._engine
        _write_json(self.unsent_file, {
            "tracking_uri": self._tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", ""),
            "experiment_name": self.experiment_name,
            "run_name": self.run_name,
            "run_id": self.cur_run.info.run_id if self.cur_run is not None else None,
            "params": dict(self._params) if self._started else {
                **self._params,
                **{k: str(v) for k, v in (self.experiment_param or {}).items()},
                **{a: str(getattr(engine.state, a, None)) for a in self.default_tracking_params if engine is not None},
            },
            "metrics": [{"key": m.key, "value": m.value, "timestamp": m.timestamp, "step": m.step} for m in self._metrics],
            "artifacts": list(self._artifacts),
            "late_epochs": sorted(self._late),
            "down_since": self._down_since,
            "terminate": self._close,
        })  # fmt: skip


def send_unsent(path: str, tracking_uri: str | None = None, retries: int = 2) -> dict[str, Any]:
    """Send what a :class:`GuardedMLFlowHandler` could not, from its ``unsent_file``; remove the file.

    The run is found by its id (or by its name in its experiment, created if it never reached the
    server), gets the parameters, metrics (with their original epochs and times) and artifacts,
    the tags :data:`LATE_TAG` and :data:`NOTE_TAG`, and is ended as FINISHED when the training
    had ended.

    Args:
        path: the ``unsent_file``.
        tracking_uri: the server; default the one recorded in the file.
        retries: HTTP retries of each call.

    Returns:
        ``{"run_id", "late_epochs", "metrics", "artifacts"}`` of what was sent.

    Raises:
        Exception: the MLflow client's error when the server still does not answer (see
            :func:`is_unreachable`); the file is then left as it was.
    """
    import mlflow

    with open(path) as f:
        unsent = json.load(f)
    uri = tracking_uri or unsent["tracking_uri"] or None
    client = mlflow.MlflowClient(tracking_uri=uri)
    with quick_requests(retries):
        run_id = unsent.get("run_id")
        if not run_id:
            exp = client.get_experiment_by_name(unsent["experiment_name"])
            exp_id = exp.experiment_id if exp is not None else client.create_experiment(unsent["experiment_name"])
            runs = client.search_runs([exp_id], filter_string=f"attributes.run_name = '{unsent['run_name']}'")
            run_id = runs[0].info.run_id if runs else client.create_run(exp_id, run_name=unsent["run_name"]).info.run_id
        existing = client.get_run(run_id).data.params
        params = [mlflow.entities.Param(k, v) for k, v in unsent.get("params", {}).items() if k not in existing]
        metrics = [mlflow.entities.Metric(m["key"], m["value"], m["timestamp"], m["step"]) for m in unsent["metrics"]]
        for i in range(0, len(params), 100):
            client.log_batch(run_id, params=params[i : i + 100], metrics=[], tags=[])
        for i in range(0, len(metrics), _BATCH):
            client.log_batch(run_id, metrics=metrics[i : i + _BATCH], params=[], tags=[])
        sent = [a for a in unsent.get("artifacts", []) if os.path.exists(a)]
        for artifact in sent:
            client.log_artifact(run_id, artifact)
        late = set(unsent.get("late_epochs", [])) | {m.step for m in metrics}
        if late:
            late = _tag_late(client, run_id, late, unsent.get("down_since"), back=False)
        if unsent.get("terminate"):
            client.set_terminated(run_id, "FINISHED")
    os.remove(path)
    return {"run_id": run_id, "late_epochs": sorted(late), "metrics": len(metrics), "artifacts": sent}
