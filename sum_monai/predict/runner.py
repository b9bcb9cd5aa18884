"""``sum-monai predict``: run a bundle's ``inference.json`` on files, in batches, pipelined.

The bundle's components are built once (``create_workflow(bundle, "inference", overrides)``) and
every case goes through them the way MONAI Label runs a bundle: ``preprocessing`` ->
``inferer(network)`` -> ``postprocessing``. Cases are preprocessed by a MONAI
``ThreadBuffer`` over a DataLoader (a background thread, or ``workers`` processes) while the network runs on
the previous batch; consecutive cases of the same preprocessed shape (every 2D case: the bundles
pad to a square) go through the inferer as one batch of ``batch_size``, as plain tensors (a
``MetaTensor`` costs a metadata update per network operation). Each case is then postprocessed
and written on its own. ``postprocessing`` is run in two parts: up to its last
``Invertd`` (softmax back on the input's grid: the probability map kept for the summary), then the
rest (argmax to uint8, the bundle's ``SaveImaged``, ``SqueezeDimd``). So masks are exactly what the
bundle saves, on the input's own grid (PNG at the input size, NIfTI with the input's affine).

Per case, written into ``--output`` (names from :mod:`sum_monai.predict.cases`):

- ``<name>_seg.<ext>``: the bundle's saved mask (``.png`` for 2D bundles, ``.nii.gz`` for 3D);
- ``<name>_seg.dcm``: a DICOM SEG for DICOM inputs (:mod:`sum_monai.predict.outputs`);
- ``<name>.json``: lesions and probabilities (:mod:`sum_monai.predict.summary`), spacing,
  provenance (bundle, version, weights SHA-256, backend); for a DCE study folder which series
  were used and why (``study``, :mod:`sum_monai.io.study`);
- DCE-MRI bundles: ``<name>_sub.nii.gz``, ``<name>_pe.nii.gz`` (``<name>_ser.nii.gz``) kinetic
  maps on the input grid and the tumour's mean enhancement in the JSON (:mod:`sum_monai.predict.kinetics`);

and over all cases ``predictions.csv``. Each input is first opened with
:func:`sum_monai.io.read.read_image` (the checks datalists get: corrupt or truncated files, NaN /
Inf, degenerate geometry, image size limits) and compared with what the bundle segments (2D or
3D); the bundle itself checks the DICOM Modality. A failing case is reported (``status=failed``
with its problem) and the next one runs.

The whole prediction set is written into a scratch folder next to ``--output``
(``.sum_monai-predict-<name>-<pid>-*``) and swapped in with ``os.replace`` once every case has
run: a re-run into the same folder that is killed midway leaves the previous set whole (never
masks of two models under one ``predictions.csv``), and scratch folders of killed runs are
removed by the next run. ``--output`` must therefore be a new folder, an empty one, or an earlier
prediction folder (it holds ``predictions.csv``), which is replaced as a whole.

Example:
    >>> report = predict("breast_us_seg_2d", "data/busi", "preds", weights="model.pt")  # doctest: +SKIP
    >>> report.exit_status, len(report.failed)  # doctest: +SKIP
    (0, 0)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sum_monai.bundle.locate import Bundle
from sum_monai.bundle.run import as_override_path, create_workflow, device_override
from sum_monai.errors import ConfigError, DataError
from sum_monai.io.read import image_suffix
from sum_monai.predict.cases import Case, find_cases

logger = logging.getLogger(__name__)

__all__ = ["PredictReport", "Predictor", "predict"]

CSV_NAME = "predictions.csv"


@dataclass
class PredictReport:
    """What a prediction run wrote; ``records`` hold one dict per case (as in its JSON)."""

    output_dir: Path
    records: list[dict[str, Any]]
    csv: Path
    backend: str
    seconds: float = 0.0
    failed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def exit_status(self) -> int:
        """0 when every case was predicted, 1 when some failed."""
        return 1 if self.failed else 0


@dataclass
class Prepared:
    """A case after the bundle's preprocessing (``data``), or why it could not be (``error``)."""

    case: Case
    case_id: str
    data: dict[str, Any] | None = None
    error: str = ""
    seconds: float = 0.0
    fatal: ConfigError | None = None  # the bundle cannot work: raised by the consumer (the loader runs in a thread)

    @property
    def shape(self) -> tuple[int, ...] | None:
        """The preprocessed image's shape (cases of one shape share a batch)."""
        return tuple(self.data["image"].shape) if self.data is not None else None


def _one(items: list[Prepared]) -> Prepared:
    """``collate_fn`` of the case loader: cases stay objects (batches are formed by shape later)."""
    return items[0]


class _PreparedCases:
    """A map-style dataset: item ``i`` is case ``i`` through :meth:`Predictor.prepare`.

    Not a ``monai.data.Dataset``: its ``apply_transform`` would map over a ``(case, id)`` tuple.
    """

    def __init__(self, predictor: Predictor, items: list[tuple[Case, str]]) -> None:
        self.predictor, self.items = predictor, items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Prepared:
        return self.predictor.prepare(*self.items[index])


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def _root_cause(err: BaseException) -> BaseException:
    """The innermost exception (MONAI wraps transform errors in ``RuntimeError('applying ...')``)."""
    seen = set()
    while (err.__cause__ or err.__context__) is not None and id(err) not in seen:
        seen.add(id(err))
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    return err


def explain_failure(case: Case, err: BaseException) -> str:
    """One line saying why ``case`` failed; unreadable files are explained by :func:`read_image`.

    A bundle's own checks (``scripts/checks.py``, ``scripts/pil.py``) raise
    ``ValueError("<input>: <problem>")``; those are shown as they are.
    """
    if isinstance(err, DataError):
        return str(err)
    from sum_monai.io.read import read_image

    root = _root_cause(err)
    if isinstance(root, ValueError):
        text = str(root).strip()
        for path in case.paths:
            if any(text.startswith(f"{name}: ") for name in {str(path), str(path.absolute()), str(path.resolve())}):
                return f"{path}: {text.split(': ', 1)[1]}" if text.startswith(f"{path}: ") else text

    for path in case.paths:
        try:
            read_image(path, check_finite=False)
        except DataError as read_err:
            return str(read_err)
        except Exception:  # the reader check is only an explanation; fall back to the error itself
            break
    root = _root_cause(err)
    return f"{case.input}: prediction failed: {type(root).__name__}: {_first_line(root)}"


class Predictor:
    """A bundle's inference components, built once, run one case at a time.

    Args:
        bundle: the bundle.
        work_dir: a scratch folder for the bundle's saved masks and exports (removed by :meth:`close`).
        weights: the checkpoint; default the bundle's ``models/model.pt``.
        backend: ``torch``, ``torchscript`` or ``onnx``.
        model_file: an exported ``model.ts`` / ``.onnx`` for those backends (default: export the weights).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        overrides: config overrides (e.g. ``{"image_size": 128}`` if the model was trained so).
        pixel_spacing: pixel size in mm of PNG / JPEG inputs (they carry none), for areas in mm^2.
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16`` for the torch backend (default: the
            bundle's ``precision`` config value), or ``int8`` for the ``openvino`` backend of a 2D
            bundle: calibrated on ``calibration``'s training images and refused unless it agrees
            with fp32 on its validation images (:mod:`sum_monai.predict.int8`). A precision the
            device would only emulate falls back to fp32, and the log and each case's JSON say so
            (:mod:`sum_monai.utils.precision`).
        calibration: a datalist JSON (``training`` and ``validation`` splits) for ``int8``.

    Raises:
        ConfigError: bad weights (see :mod:`sum_monai.bundle.weights`), a postprocessing without
            ``Invertd`` or ``SaveImaged``, an unknown backend.
    """

    def __init__(
        self,
        bundle: Bundle,
        work_dir: Path,
        weights: str | Path | None = None,
        backend: str = "torch",
        model_file: str | Path | None = None,
        device: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        pixel_spacing: tuple[float, ...] | None = None,
        precision: str | None = None,
        calibration: str | Path | None = None,
    ) -> None:
        from monai.transforms import Invertd, SaveImaged

        from sum_monai.bundle.weights import default_checkpoint, load_checked_state_dict
        from sum_monai.predict.backends import BACKENDS, convert_members, load_backend
        from sum_monai.utils.precision import resolve_precision

        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend {backend!r}; one of {', '.join(BACKENDS)}")
        self.bundle = bundle
        self.backend = backend
        self.pixel_spacing = tuple(pixel_spacing) if pixel_spacing else None
        meta = bundle.metadata["network_data_format"]
        self.channels = int(meta["inputs"]["image"]["num_channels"])
        self.spatial_dims = len(meta["inputs"]["image"]["spatial_shape"])
        self.modality = str(meta["inputs"]["image"].get("modality", ""))
        channel_def = meta["outputs"]["pred"].get("channel_def", {})
        self.class_names = [str(channel_def[k]) for k in sorted(channel_def, key=int)]
        self.channel_names = [
            str(v) for _, v in sorted(meta["inputs"]["image"].get("channel_def", {}).items())
        ]

        self.scratch = Path(work_dir)
        self.scratch.mkdir(parents=True, exist_ok=True)
        try:
            (self.scratch / "saved").mkdir()
            (self.scratch / "export").mkdir()
            run_overrides = dict(overrides or {})
            run_overrides["output_dir"] = as_override_path(self.scratch / "saved")
            run_overrides.update(device_override(device))
            if weights is not None:  # other weights replace the shipped ensemble: its members are the fold*.pt beside them
                run_overrides["ckpt_path"] = as_override_path(Path(weights))
            parser = create_workflow(bundle, "inference", run_overrides).parser
            self.device = parser.get_parsed_content("device")
            try:
                requested = precision or (str(parser.get_parsed_content("precision")) if "precision" in parser else "auto")
                if requested == "int8":
                    self.precision = self._int8_precision(backend, model_file, calibration)
                else:
                    # OpenVINO runs on the CPU whatever the torch device: its precision is the CPU's
                    target = "cpu" if backend == "openvino" else self.device
                    self.precision = resolve_precision(requested if backend in ("torch", "openvino") else "fp32", target)
            except ValueError as err:
                raise ConfigError(str(err)) from err
            logger.info("precision %s (%s)", self.precision.name, self.precision.reason)
            self.preprocessing = parser.get_parsed_content("preprocessing")
            self.inferer = parser.get_parsed_content("inferer")
            self.postprocessing = parser.get_parsed_content("postprocessing")
            post = list(self.postprocessing.transforms)
            inverts = [i for i, t in enumerate(post) if isinstance(t, Invertd)]
            if not inverts:
                raise ConfigError(
                    f"{bundle.root}: inference.json postprocessing has no Invertd: predictions would not be on the input grid"
                )
            if not any(isinstance(t, SaveImaged) for t in post):
                raise ConfigError(
                    f"{bundle.root}: inference.json postprocessing has no SaveImaged: no mask would be written"
                )
            self.split = inverts[-1] + 1
            self.kinetics = None
            if self.spatial_dims == 3 and self.channels > 1:
                from sum_monai.predict.kinetics import KineticMapWriter

                self.kinetics = KineticMapWriter.for_bundle(bundle)

            if model_file is not None and backend != "torch":
                self.weights = Path(model_file)
                network = None
                weights_file = self.weights
            else:
                self.weights = Path(weights) if weights is not None else default_checkpoint(bundle)
                network = parser.get_parsed_content("network")
                state = load_checked_state_dict(bundle, self.weights, network=network)
                network.load_state_dict(state)
                network.eval()  # every use below is inference (the INT8 check runs it before any backend does)
                weights_file = self.scratch / "export" / "weights.pt"
                if backend != "torch":
                    import torch

                    torch.save(state, weights_file)
            self.weights_sha256 = _sha256(self.weights)
            self.int8 = None
            calib: list[Any] | None = None
            if self.precision.name == "int8":  # fp32 reference first, with the eager network and members
                from sum_monai.predict.int8 import outputs_of, split_inputs

                calib = split_inputs(Path(str(calibration)), "training", self.preprocessing)
                checked = split_inputs(Path(str(calibration)), "validation", self.preprocessing)
                reference = outputs_of(self.inferer, network, checked, self.device)
            self.network = load_backend(
                backend, bundle, network, weights_file, self.scratch / "export", self.device, model_file, overrides,
                self.precision.name, calib,
            )  # fmt: skip
            if backend != "torch":  # every fold member of an ensemble runs in the backend too
                convert_members(
                    self.inferer, backend, bundle, self.scratch / "export", self.device, overrides, self.precision.name, calib
                )  # fmt: skip
            if calib is not None:
                from sum_monai.predict.int8 import check_agreement

                self.int8 = check_agreement(reference, outputs_of(self.inferer, self.network, checked, self.device), len(calib))
        except BaseException:
            self.close()
            raise

    def _int8_precision(self, backend: str, model_file: str | Path | None, calibration: str | Path | None) -> Any:
        """The INT8 precision, where it can run (OpenVINO, a 2D bundle, its weights, a calibration datalist)."""
        from sum_monai.utils.precision import Precision

        if backend != "openvino":
            raise ConfigError("--precision int8 is for --backend openvino (NNCF post-training quantisation)")
        if self.spatial_dims != 2:
            raise ConfigError(
                f"--precision int8 is for 2D bundles: {self.bundle.name}'s network sees sliding windows, which "
                "calibration on whole images would not represent"
            )
        if model_file is not None:
            raise ConfigError("--precision int8 quantises the bundle's weights (--weights), not a given --model")
        if calibration is None:
            raise ConfigError(
                "--precision int8 needs --calibration DATALIST: its training images calibrate, its validation images "
                "check the agreement with fp32"
            )
        try:
            import nncf  # noqa: F401
        except ImportError as err:
            raise ConfigError("--precision int8 needs NNCF: pip install 'sum_monai[bench]' (or nncf)") from err
        return Precision("int8", "int8", "cpu", "OpenVINO INT8 (NNCF post-training quantisation), checked against fp32")

    def close(self) -> None:
        """Remove the scratch folder."""
        shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one case -------------------------------------------------------------------------------

    def check_input(self, case: Case) -> None:
        """Open every input of ``case`` as datalists do, and check it is what the bundle segments.

        Raises:
            DataError: an unusable file (see :func:`sum_monai.io.read.read_image`: corrupt, NaN /
                Inf, degenerate geometry, size limits), or an image of other dimensions than the
                bundle's (a 2D NIfTI given to the 3D bundle).
        """
        from sum_monai.io.read import read_image

        if case.study is not None:  # a DCE study: the bundle's DCEStudyReader picked and checked its series (phases may share a folder)
            return
        for path in case.paths:
            image = read_image(path)
            dims = len(image.spatial_shape)
            if dims != self.spatial_dims:
                kind = "volumes" if self.spatial_dims == 3 else "images"
                raise DataError(
                    path,
                    f"is a {dims}D image of size {image.spatial_shape}; {self.bundle.name} segments "
                    f"{self.spatial_dims}D {kind}",
                )

    def prepare(self, case: Case, case_id: str = "") -> Prepared:
        """Check ``case`` and run the bundle's preprocessing; never raises (it runs in the loader's thread).

        A data problem is returned in ``error``; a :class:`ConfigError` (the bundle cannot work,
        never a property of one case) in ``fatal``, for the consumer to raise.
        """
        t0 = time.perf_counter()
        prepared = Prepared(case, case_id)
        try:
            if case.problem:
                raise DataError(case.input, case.problem)
            self.check_input(case)
            import torch

            with torch.no_grad():
                data = self.preprocessing({"image": case.image})
            channels = int(data["image"].shape[0])
            if channels != self.channels:
                wanted = f" ({', '.join(self.channel_names)})" if self.channel_names else ""
                raise DataError(case.input, f"has {channels} channel(s); the bundle needs {self.channels}{wanted}")
            prepared.data = data
        except ConfigError as err:
            prepared.fatal = err
        except Exception as err:
            prepared.error = explain_failure(case, err)
            logger.debug("case %s failed in preprocessing", case.name, exc_info=True)
        prepared.seconds = time.perf_counter() - t0
        return prepared

    def infer_batch(self, batch: list[Prepared]) -> list[Any]:
        """The inferer's output of each prepared case (same shapes), run as one batch.

        Returns one ``MetaTensor`` per case (with its image's metadata), or the exception of a
        case whose batch failed and that fails alone too (the others are run one by one).
        """
        import torch
        from monai.data import MetaTensor

        images = [p.data["image"] for p in batch if p.data is not None]
        try:
            with torch.no_grad():
                x = torch.stack([torch.as_tensor(i.as_tensor() if isinstance(i, MetaTensor) else i) for i in images])
                if self.backend == "torch":
                    with self.precision.autocast():
                        preds = self.inferer(self.precision.layout(x.to(self.device)), self.network)
                else:  # the runtime has its own precision (OpenVINO) or none (TorchScript / ONNX Runtime: fp32)
                    preds = self.inferer(x.to(self.device), self.network)
                preds = [torch.as_tensor(p).float().contiguous() for p in preds]
        except ConfigError:
            raise
        except Exception as err:
            if len(batch) == 1:
                return [err]
            return [out for p in batch for out in self.infer_batch([p])]
        return [MetaTensor(pred, meta=dict(img.meta)) for pred, img in zip(preds, images, strict=True)]

    def _post(self, data: dict[str, Any], pred: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, Path]:
        """Postprocess one case; return label map, probabilities, affine and the saved mask."""
        import torch

        for old in (self.scratch / "saved").rglob("*"):
            if old.is_file():
                old.unlink()
        with torch.no_grad():
            data["pred"] = pred
            data = self.postprocessing(data, end=self.split)
            probabilities = data["pred"].detach().cpu().numpy().astype(np.float32)
            affine = np.asarray(data["pred"].affine, dtype=np.float64)
            data = self.postprocessing(data, start=self.split)
            label_map = np.asarray(data["pred"].detach().cpu().numpy())
        saved = [p for p in (self.scratch / "saved").rglob("*") if p.is_file()]
        if len(saved) != 1:
            raise ConfigError(
                f"{self.bundle.root}: SaveImaged wrote {len(saved)} files for one case (expected 1)"
            )
        if label_map.shape != probabilities.shape[1:]:
            raise ConfigError(
                f"{self.bundle.root}: postprocessing gave a label map {label_map.shape} that does not match the "
                f"probabilities {probabilities.shape} (postprocessing should end with AsDiscreted(argmax) and SqueezeDimd)"
            )
        return label_map, probabilities, affine, saved[0]

    def _spacing(
        self, case: Case, affine: np.ndarray
    ) -> tuple[tuple[float, ...] | None, float | None, str | None]:
        """Spacing (MONAI axis order), pixel area / voxel volume, and where it came from."""
        from sum_monai.predict.outputs import dicom_spacing, volume_spacing

        if self.spatial_dims == 3:
            spacing, volume = volume_spacing(affine)
            return spacing, volume, "image header (affine)"
        if case.dicom is not None and case.dicom.is_file():
            spacing2, source = dicom_spacing(case.dicom)
            if spacing2 is not None:
                return spacing2, spacing2[0] * spacing2[1], f"DICOM {source}"
        if self.pixel_spacing is not None:
            sx, sy = (self.pixel_spacing * 2)[:2]
            return (sx, sy), sx * sy, "--pixel-spacing"
        return None, None, None

    def finish(self, prepared: Prepared, pred: Any, output_dir: Path) -> dict[str, Any]:
        """Postprocess one inferred case and move its outputs into ``output_dir``; returns its record.

        ``pred`` is the case's entry of :meth:`infer_batch` (None for a case that failed in
        :meth:`prepare`). Data problems are caught and returned as a record with
        ``status="failed"``; a :class:`ConfigError` (the bundle or model cannot work) is raised.
        """
        from sum_monai.predict.outputs import write_case_seg
        from sum_monai.predict.summary import measure

        case = prepared.case
        record: dict[str, Any] = {
            "case": case.name,
            "case_id": prepared.case_id,
            "input": [str(p) for p in case.paths],
            "status": "failed",
        }
        t0 = time.perf_counter() - prepared.seconds
        if prepared.error or isinstance(pred, BaseException) or prepared.data is None:
            error = prepared.error or explain_failure(case, pred if isinstance(pred, BaseException) else ValueError(pred))
            record.update(status="failed", error=error, seconds=round(time.perf_counter() - t0, 3))
            return record
        stage = Path(tempfile.mkdtemp(prefix="case-", dir=self.scratch))
        try:
            label_map, probabilities, affine, saved = self._post(prepared.data, pred)
            spacing, voxel_size, spacing_source = self._spacing(case, affine)
            ext = image_suffix(saved) or saved.suffix
            moves = {saved: output_dir / f"{case.name}_seg{ext}"}
            outputs: dict[str, str | None] = {"mask": f"{case.name}_seg{ext}", "dicom_seg": None}
            if case.dicom is not None:
                seg_path = stage / "seg.dcm"
                try:
                    write_case_seg(
                        seg_path, case, label_map, affine, self.class_names, self.modality,
                        algorithm_name=self.bundle.name,
                        algorithm_version=f"{self.bundle.version} (weights sha256 {self.weights_sha256[:12]})",
                        uid_entropy=[*(str(p.resolve()) for p in case.paths), self.bundle.name, self.bundle.version, self.weights_sha256],
                    )  # fmt: skip
                except DataError as err:  # name the input, not the scratch file being written
                    if err.path != str(seg_path):
                        raise
                    raise DataError(case.dicom, err.problem) from err
                moves[seg_path] = output_dir / f"{case.name}_seg.dcm"
                outputs["dicom_seg"] = f"{case.name}_seg.dcm"
            kinetics = None
            if self.kinetics is not None:
                staged, kinetics = self.kinetics.run(case, label_map, affine, stage)
                for src, name in staged.items():
                    moves[src] = output_dir / name
                outputs.update({f"map_{k}": v for k, v in (kinetics.get("maps") or {}).items()})
            outputs["json"] = f"{case.name}.json"
            record.update(
                status="ok",
                bundle=self.bundle.name,
                bundle_version=self.bundle.version,
                backend=self.backend,
                precision=self.precision.name,
                **({"int8_check": self.int8.as_record()} if self.int8 is not None else {}),
                weights=str(self.weights),
                weights_sha256=self.weights_sha256,
                classes=self.class_names,
                spatial_shape=list(label_map.shape),
                axes="MONAI order: 2D (columns, rows); 3D (x, y, z) of the affine",
                spacing_mm=[round(s, 6) for s in spacing] if spacing else None,
                spacing_source=spacing_source,
                affine=np.round(affine, 6).tolist() if self.spatial_dims == 3 else None,
                measurements=measure(label_map, probabilities, self.class_names, voxel_size),
                **({"study": case.study} if case.study is not None else {}),
                **({"kinetics": kinetics} if kinetics is not None else {}),
                outputs=outputs,
                seconds=round(time.perf_counter() - t0, 3),
            )
            json_path = stage / "case.json"
            json_path.write_text(json.dumps(record, indent=1) + "\n")
            moves[json_path] = output_dir / outputs["json"]
            for src, dst in moves.items():  # every file of the case is complete: move them in
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
        except ConfigError:
            raise
        except Exception as err:
            record.update(
                status="failed", error=explain_failure(case, err), seconds=round(time.perf_counter() - t0, 3)
            )
            logger.debug("case %s failed", case.name, exc_info=True)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        return record


def _case_id(case: Case, root: Path) -> str:
    """Anonymised id of a case (keyed hash of its first input relative to ``--input``)."""
    from sum_monai.datalists.ids import case_id

    first = case.paths[0].resolve()
    try:
        rel = first.relative_to(root.resolve())
    except ValueError:
        rel = Path(first.name)
    return case_id(rel if str(rel) != "." else Path(first.name))


def predict(
    bundle: str | Path | Bundle,
    input_path: str | Path,
    output_dir: str | Path,
    *,
    weights: str | Path | None = None,
    backend: str = "torch",
    model_file: str | Path | None = None,
    device: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    pixel_spacing: tuple[float, ...] | None = None,
    progress: bool = True,
    batch_size: int | None = None,
    workers: int = 0,
    precision: str | None = None,
    calibration: str | Path | None = None,
) -> PredictReport:
    """Predict every case of ``input_path`` into ``output_dir``.

    Args:
        bundle: bundle folder or name.
        input_path: a file or folder (layouts: :mod:`sum_monai.predict.cases`).
        output_dir: where masks, SEGs, JSONs and ``predictions.csv`` go (created if missing).
        weights: checkpoint (default the bundle's ``models/model.pt``); checked before use.
        backend: ``torch`` (default), ``torchscript`` or ``onnx`` (ONNX Runtime, CPU).
        model_file: an exported model for ``torchscript`` / ``onnx`` instead of exporting ``weights``.
        device: ``auto``, ``cpu``, ``cuda``...
        overrides: bundle config overrides.
        pixel_spacing: mm per pixel of PNG / JPEG inputs (one value, or column and row spacing).
        progress: show a progress bar over cases (when there are several).
        batch_size: cases of the same preprocessed shape run through the network together
            (masks are the same as one at a time, up to float rounding); default 8 for 2D
            bundles, 1 for 3D (a scanner-size volume's sliding-window buffers are large).
        workers: preprocessing processes; 0 (default): one background thread, which on a
            machine of few cores leaves the cores to the network.
        precision: ``auto``, ``fp32``, ``bf16``, ``fp16``; default the bundle's ``precision``;
            ``int8`` with ``backend="openvino"`` and ``calibration`` (see :class:`Predictor`).
        calibration: datalist JSON whose training images calibrate INT8 and whose validation
            images check its agreement with fp32.

    Returns:
        The report; ``exit_status`` is 1 when some cases failed.

    Raises:
        ConfigError: bundle, weights or model cannot be used.
        DataError: the input holds no case.
    """
    from sum_monai.predict.summary import write_predictions_csv

    t0 = time.perf_counter()
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.find(bundle)
    out = Path(output_dir)
    _check_output(out, Path(input_path))
    fmt = bundle.metadata["network_data_format"]["inputs"]["image"]
    studies = None
    if len(fmt["spatial_shape"]) == 3 and int(fmt["num_channels"]) > 1:
        from sum_monai.io.study import StudyFinder

        studies = StudyFinder.for_bundle(bundle, dict(overrides or {}))
    batch_size = batch_size or (8 if len(fmt["spatial_shape"]) == 2 else 1)
    cases = find_cases(input_path, len(fmt["spatial_shape"]), int(fmt["num_channels"]), skip=out, studies=studies)
    root = Path(input_path) if Path(input_path).is_dir() else Path(input_path).parent
    records: list[dict[str, Any]] = []
    _remove_stale_scratch(out)
    scratch = _new_scratch(out)
    result = scratch / "result"
    try:
        result.mkdir()
        with Predictor(bundle, scratch / "work", weights, backend, model_file, device, overrides, pixel_spacing,
                       precision, calibration) as predictor:  # fmt: skip
            records = _run_cases(predictor, cases, root, result, batch_size, workers, progress)
        write_predictions_csv(records, result / CSV_NAME)
        _swap_in(result, out, scratch)
    finally:
        if (scratch / "previous").is_dir() and not out.exists():  # interrupted between the two renames
            os.replace(scratch / "previous", out)
        shutil.rmtree(scratch, ignore_errors=True)
    failed = [r for r in records if r["status"] != "ok"]
    return PredictReport(out, records, out / CSV_NAME, backend, round(time.perf_counter() - t0, 2), failed)


def _run_cases(
    predictor: Predictor, cases: list[Case], root: Path, result: Path, batch_size: int, workers: int, progress: bool
) -> list[dict[str, Any]]:
    """Preprocess in the loader, infer same-shape runs of cases as batches, finish each; the records in input order."""
    from monai.data import ThreadBuffer
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    # torch's DataLoader, not MONAI's: that one walks the dataset's attributes to seed random
    # transforms (there are none here) and recurses into the predictor's object graph
    dataset = _PreparedCases(predictor, [(case, _case_id(case, root)) for case in cases])
    loader = ThreadBuffer(
        DataLoader(dataset, batch_size=1, collate_fn=_one, num_workers=workers, shuffle=False),  # type: ignore[arg-type]
        buffer_size=max(2, batch_size),
    )
    bar = tqdm(total=len(cases), desc=f"predict {predictor.bundle.name}", unit="case", file=sys.stderr,
               disable=not progress or len(cases) < 2)  # fmt: skip
    records: list[dict[str, Any]] = []

    def finish(batch: list[Prepared]) -> None:
        preds = predictor.infer_batch(batch) if batch and batch[0].data is not None else [None] * len(batch)
        for prepared, pred in zip(batch, preds, strict=True):
            record = predictor.finish(prepared, pred, result)
            records.append(record)
            bar.update()
            if record["status"] != "ok":
                bar.write(f"failed: {record['error']}", file=sys.stderr)
        batch.clear()

    try:
        pending: list[Prepared] = []
        for prepared in loader:
            if prepared.fatal is not None:
                raise prepared.fatal
            if prepared.data is None:
                finish([prepared])  # a failed case is reported at once; the batch being formed waits
                continue
            if pending and (prepared.shape != pending[0].shape or len(pending) >= batch_size):
                finish(pending)
            pending.append(prepared)
        finish(pending)
    finally:
        bar.close()
    if len(records) != len(cases):  # the loader's thread died (its traceback is on stderr)
        raise RuntimeError(f"the case loader stopped after {len(records)} of {len(cases)} cases")
    order = {case.name: i for i, case in enumerate(cases)}
    return sorted(records, key=lambda r: order.get(r["case"], len(order)))


#: Prefix of the scratch folders a prediction run writes next to its output.
SCRATCH_PREFIX = ".sum_monai-predict-"


def _check_output(out: Path, input_path: Path) -> None:
    """``--output`` must be new, empty, or an earlier prediction folder (it is replaced whole).

    Raises:
        DataError: it is a file, or a folder holding other files (or the input).
    """
    if out.exists() and not out.is_dir():
        raise DataError(out, "is a file, not a folder: --output names the folder predictions are written to")
    if not out.is_dir():
        return
    inp = input_path.resolve()
    if inp == out.resolve() or out.resolve() in inp.parents:
        raise DataError(out, f"holds the input {input_path}: predict replaces --output as a whole; choose another folder")
    if any(out.iterdir()) and not (out / CSV_NAME).is_file():
        raise DataError(
            out,
            f"holds other files and no {CSV_NAME}: predict replaces --output as a whole, so it must be a new or empty "
            "folder, or an earlier prediction folder",
        )


def _scratch_owner_alive(folder: Path) -> bool:
    """Whether the process that made a scratch folder (``...-<pid>-<random>``) still runs."""
    parts = folder.name.rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_scratch(out: Path) -> None:
    """Remove scratch folders of killed runs into ``out`` (and old ones inside it)."""
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        return
    stale = [p for p in parent.glob(f"{SCRATCH_PREFIX}{out.name}-*") if p.is_dir() and not _scratch_owner_alive(p)]
    if out.is_dir():
        stale += [p for p in out.glob(f"{SCRATCH_PREFIX}*") if p.is_dir()]  # the layout before whole-set swaps
    for folder in stale:
        logger.info("removing %s, left by a killed prediction run", folder)
        shutil.rmtree(folder, ignore_errors=True)


def _new_scratch(out: Path) -> Path:
    from sum_monai.utils.atomic import make_dir

    parent = make_dir(out.parent if str(out.parent) else Path("."))
    try:
        return Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{out.name}-{os.getpid()}-", dir=parent))
    except OSError as err:
        raise DataError(out, f"cannot write here: {err.strerror or err}") from err


def _swap_in(result: Path, out: Path, scratch: Path) -> None:
    """Put the finished prediction set ``result`` at ``out`` (the old set moves into ``scratch``)."""
    if out.is_dir():
        os.replace(out, scratch / "previous")
    os.replace(result, out)
