"""Out-of-fold probability maps of a cross-validation: every case predicted by the fold model that never saw it.

For each fold, the fold's own configs (the evaluate workflow of the fold run's bundle, its recipe inside)
give the loading, intensity and spatial transforms and the network; the fold's last-epoch weights
predict its validation cases, once plainly and once with the test-time mirror, and the class
probabilities are mapped back (``Invertd`` of the spatial transforms) onto the *loaded* grid, the
grid the reference label is read on. They are stored per case as ``OUT/oof/<case_id>.npz``
(uint8 probabilities x 255 per foreground class, ``plain`` and ``mirror``, and the reference
label), so every post-processing choice (mirror, island filter, gating, thresholds of an FROC)
is scored afterwards without running a network again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sum_monai.bundle.locate import Bundle
from sum_monai.errors import ConfigError
from sum_monai.utils.atomic import atomic_path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OOFCase:
    """One case's out-of-fold prediction, read back from its ``.npz``.

    Attributes:
        case_id: anonymised case id.
        fold: the fold whose model predicted it.
        cls: the case's class in the datalist (``benign``, ``normal``...).
        label: reference label map on the loaded grid (H x W ints).
        plain: foreground class probabilities x 255 (C-1 x H x W, uint8; :meth:`probs` gives floats).
        mirror: the same with the test-time mirror (mean of the image and its mirror image).
        flipped: whether the bundle's loading flipped the image left-right (mammography breast
            orientation): the loaded grid is then the file's grid mirrored along its first axis.
    """

    case_id: str
    fold: int
    cls: str
    label: np.ndarray
    plain: np.ndarray
    mirror: np.ndarray
    flipped: bool = False

    def probs(self, use_mirror: bool) -> np.ndarray:
        """Class probabilities ``(C, H, W)`` float32, background first, with or without the mirror pass."""
        foreground = (self.mirror if use_mirror else self.plain).astype(np.float32) / 255
        background = np.clip(1 - foreground.sum(axis=0, keepdims=True), 0, 1)
        return np.concatenate([background, foreground])


@dataclass
class GridPredictor:
    """A bundle's loading, network-input transforms and network, giving probabilities on the loaded grid.

    The loaded grid is what ``load_transforms`` (and ``label_transforms``) give: the file's pixel
    grid (mirrored where the mammography loading turns the breast), on which the reference label
    is read too. Built from the bundle's evaluate workflow (a run's bundle holds its recipe).

    Attributes:
        load: loading (and label) transforms.
        to_net: intensity and spatial transforms to the network's input; inverted on the output.
        network: the network with the weights loaded, in eval mode.
        inferer: the bundle's own inferer (``validate#inferer``: its mirror pass, fold ensemble),
            used by :meth:`bundle_probabilities`.
    """

    load: Any
    to_net: Any
    network: Any
    inferer: Any

    @classmethod
    def from_bundle(cls, bundle: Bundle, weights: Path, overrides: dict[str, Any] | None = None) -> GridPredictor:
        """Build it on the CPU from ``bundle`` (``overrides``: ad-hoc config values), loading ``weights`` (checked first)."""
        from monai.transforms import Compose

        from sum_monai.bundle.run import as_override_path, create_workflow
        from sum_monai.bundle.weights import load_checked_state_dict

        run = {**(overrides or {}), "ckpt_path": as_override_path(weights), "device": "$torch.device('cpu')"}
        parser = create_workflow(bundle, "evaluate", run).parser
        load = parser.get_parsed_content("load_transforms") + (
            parser.get_parsed_content("label_transforms") if "label_transforms" in parser else []
        )
        to_net = Compose(parser.get_parsed_content("intensity_transforms") + parser.get_parsed_content("spatial_transforms"))
        network = parser.get_parsed_content("network_def")
        network.load_state_dict(load_checked_state_dict(bundle, weights, network=network))
        network.eval()
        return cls(Compose(load), to_net, network, parser.get_parsed_content("validate#inferer"))

    def loaded(self, case: dict[str, Any]) -> dict[str, Any]:
        """The case as the bundle loads it (image, label)."""
        return self.load({k: v for k, v in case.items() if k in ("image", "label", "lesion_class")})

    def _to_grid(self, outputs: Any, net_in: Any) -> np.ndarray:
        import torch

        return _back_to_loaded_grid(torch.softmax(outputs, 1)[0], net_in, self.to_net)

    def probabilities(self, loaded: dict[str, Any], mirror_axes: Sequence[int]) -> dict[str, np.ndarray]:
        """Class probabilities ``(C, *loaded grid)``: ``plain`` and ``mirror`` (logits averaged with the mirror images)."""
        import torch

        net_in = self.to_net({"image": loaded["image"]})["image"]
        with torch.no_grad():
            x = net_in.unsqueeze(0).as_tensor()
            logits = self.network(x)
            total = logits.clone()
            for axis in mirror_axes:
                total += torch.flip(self.network(torch.flip(x, dims=(axis + 2,))), dims=(axis + 2,))
            return {"plain": self._to_grid(logits, net_in), "mirror": self._to_grid(total / (1 + len(mirror_axes)), net_in)}

    def bundle_probabilities(self, loaded: dict[str, Any]) -> np.ndarray:
        """Class probabilities ``(C, *loaded grid)`` through the bundle's own inferer (what it ships)."""
        import torch

        net_in = self.to_net({"image": loaded["image"]})["image"]
        with torch.no_grad():
            return self._to_grid(self.inferer(net_in.unsqueeze(0).as_tensor(), self.network), net_in)


def _back_to_loaded_grid(probs: Any, net_image: Any, to_net: Any) -> np.ndarray:
    """Invert the spatial transforms on class probabilities (bilinear), giving the loaded grid."""
    from monai.data import MetaTensor
    from monai.transforms import Invertd

    pred = MetaTensor(probs, meta=dict(net_image.meta), applied_operations=list(net_image.applied_operations))
    inverted = Invertd(keys="pred", transform=to_net, orig_keys="image", nearest_interp=False)(
        {"pred": pred, "image": net_image}
    )["pred"]
    return np.asarray(inverted)


def predict_fold(
    bundle: Bundle, fold_dir: Path, cases: list[dict[str, Any]], out_dir: Path, mirror_axes: Sequence[int],
    fold: int, progress: bool = True,
) -> int:
    """Write the out-of-fold ``.npz`` of every case of ``cases`` with the fold run's last-epoch weights.

    Returns:
        the number of cases predicted now (those already written are skipped).
    """
    from sum_monai.workflows.rundir import RunRecord

    def predictors() -> list[GridPredictor]:
        return [GridPredictor.from_bundle(RunRecord.load(fold_dir).run_bundle(fold_dir), fold_dir / "models" / "model.pt")]

    return write_oof(predictors, cases, out_dir, mirror_axes, fold, progress)


def write_oof(
    predictors: Callable[[], Sequence[GridPredictor]], cases: list[dict[str, Any]], out_dir: Path,
    mirror_axes: Sequence[int], fold: int, progress: bool = True,
) -> int:
    """Write ``out_dir/<case_id>.npz`` for every case not written yet: the mean class probabilities of
    ``predictors()`` (built only when a case is left to predict; several: an ensemble of snapshots).

    Returns:
        the number of cases predicted now.
    """
    from tqdm import tqdm

    todo = [c for c in cases if not (out_dir / f"{c['case_id']}.npz").is_file()]
    if not todo:
        return 0
    members = list(predictors())
    for case in tqdm(todo, desc=f"fold {fold} out-of-fold", disable=not progress):
        loaded = members[0].loaded(case)
        runs = [m.probabilities(loaded, mirror_axes) for m in members]
        probs = {name: sum(r[name] for r in runs) / len(runs) for name in runs[0]}
        arrays = {name: np.round(p[1:] * 255).clip(0, 255).astype(np.uint8) for name, p in probs.items()}
        label = np.asarray(loaded["label"])[0].astype(np.uint8) if "label" in loaded else None
        flipped = bool(getattr(loaded["image"], "meta", {}).get("orient_flipped", False))
        with atomic_path(out_dir / f"{case['case_id']}.npz") as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, label=label, fold=fold, cls=str(case.get("class", "")), flipped=flipped, **arrays)
    return len(todo)


def predict_out_of_fold(
    bundle: str | Path | Bundle, cv_dir: str | Path, mirror_axes: Sequence[int], progress: bool = True
) -> Path:
    """Predict the held-out cases of every trained fold of a CV folder into ``cv_dir/oof/``.

    Args:
        bundle: the bundle the CV trained.
        cv_dir: folder written by :func:`sum_monai.workflows.cv.run_folds`.
        mirror_axes: spatial axes of the test-time mirror (ultrasound ``(0,)``: left-right;
            mammography ``(1,)``: up-down, as left-right is fixed by the breast orientation).

    Returns:
        the ``oof`` folder.

    Raises:
        ConfigError: no fold of ``cv_dir`` has finished.
    """
    from sum_monai.workflows.rundir import RunRecord

    bundle = bundle if isinstance(bundle, Bundle) else Bundle.find(bundle)
    cv_dir = Path(cv_dir)
    out = cv_dir / "oof"
    out.mkdir(parents=True, exist_ok=True)
    done = 0
    for fold_dir in sorted(cv_dir.glob("fold*")):
        if not (fold_dir / "run.json").is_file() or RunRecord.load(fold_dir).status != "finished":
            continue
        fold = int(fold_dir.name[4:])
        cases = json.loads((fold_dir / "datalist.json").read_text())["validation"]
        predict_fold(bundle, fold_dir, cases, out, mirror_axes, fold, progress)
        done += 1
    if not done:
        raise ConfigError(f"{cv_dir}: no finished fold to predict (train with `sum-monai cv` first)")
    return out


def load_oof(oof_dir: str | Path) -> list[OOFCase]:
    """Every case of an ``oof`` folder."""
    out = []
    for path in sorted(Path(oof_dir).glob("*.npz")):
        with np.load(path) as z:
            out.append(
                OOFCase(
                    case_id=path.stem, fold=int(z["fold"]), cls=str(z["cls"]), label=z["label"],
                    plain=z["plain"], mirror=z["mirror"],
                    flipped=bool(z["flipped"]) if "flipped" in z else False,
                )
            )  # fmt: skip
    return out
