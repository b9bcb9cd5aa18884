"""INT8 prediction through OpenVINO: calibrated on training images, refused unless it agrees with fp32.

``sum-monai predict --backend openvino --precision int8 --calibration DATALIST``:

1. the bundle's preprocessing turns up to :data:`MAX_IMAGES` images of the datalist's
   ``training`` split into network inputs; NNCF's post-training quantisation
   (``nncf.quantize``, OpenVINO backend) calibrates every network of the bundle on them (the
   fold members of an ensemble each on the same inputs);
2. up to :data:`MAX_IMAGES` images of its ``validation`` split (never the calibration images) go
   through the bundle's inferer twice, eager fp32 and INT8; the lesion masks of its output (argmax
   not background, at the network's resolution, before the bundle's lesion thresholds and island
   filter) are compared image by image (Dice; two empty masks agree);
3. a mean below :data:`MIN_AGREEMENT` (0.995) is refused with the figure, before any case is
   predicted: an INT8 model that changes masks is not a faster version of the same model.

2D bundles only: a 3D bundle's network sees sliding windows, which would need window
calibration; it is refused with that reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sum_monai.errors import ConfigError

logger = logging.getLogger(__name__)

#: Lesion-mask Dice vs fp32, mean over the validation images, below which INT8 is refused.
MIN_AGREEMENT = 0.995
#: Images per split used for calibration and for the agreement check.
MAX_IMAGES = 16


@dataclass(frozen=True)
class Int8Check:
    """The agreement of INT8 with fp32 measured before predicting.

    Attributes:
        dice: mean lesion-mask Dice, INT8 vs fp32, over ``images`` validation images.
        worst: the lowest per-image Dice.
        images: validation images compared.
        calibration_images: training images NNCF calibrated on.
    """

    dice: float
    worst: float
    images: int
    calibration_images: int

    def as_record(self) -> dict[str, Any]:
        return {"dice_vs_fp32": round(self.dice, 4), "worst": round(self.worst, 4), "validation_images": self.images,
                "calibration_images": self.calibration_images}  # fmt: skip


def split_inputs(datalist: Path, split: str, preprocessing: Callable[[dict], dict], limit: int = MAX_IMAGES) -> list[torch.Tensor]:
    """The network inputs (``(1, C, *spatial)``) of the first ``limit`` images of ``split``.

    Raises:
        ConfigError: the datalist cannot be read or has no such split.
    """
    from monai.data import load_decathlon_datalist

    try:
        items = load_decathlon_datalist(str(datalist), True, split, base_dir=str(Path(datalist).resolve().parent))
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(f"{datalist}: --calibration needs a datalist JSON with a {split!r} split ({err})") from err
    if not items:
        raise ConfigError(f"{datalist}: its {split!r} split is empty (--calibration uses training and validation images)")
    out = []
    with torch.no_grad():
        for item in items[:limit]:
            image = preprocessing({"image": item["image"]})["image"]
            out.append(torch.as_tensor(image).float()[None])
    return out


def lesion_dice(reference: torch.Tensor, candidate: torch.Tensor) -> float:
    """Dice of the lesion masks (argmax over channels not 0) of two ``(C, *spatial)`` outputs; 1 when both are empty."""
    from monai.metrics import compute_dice

    a, b = ((t.argmax(0) > 0).float()[None, None] for t in (reference, candidate))
    return float(compute_dice(b, a, include_background=True, ignore_empty=False)[0, 0])


def outputs_of(inferer: Any, network: Any, inputs: Sequence[torch.Tensor], device: Any = "cpu") -> list[torch.Tensor]:
    """The inferer's output ``(C, *spatial)`` for each input (run on ``device``), as float CPU tensors."""
    with torch.no_grad():
        return [torch.as_tensor(inferer(x.to(device), network)).float()[0].cpu() for x in inputs]


def check_agreement(reference: Sequence[torch.Tensor], candidate: Sequence[torch.Tensor], calibration_images: int) -> Int8Check:
    """Compare INT8 outputs with fp32 ones; refuse below :data:`MIN_AGREEMENT`.

    Raises:
        ConfigError: the mean lesion-mask Dice is below the threshold (the figure in the message).
    """
    scores = [lesion_dice(r, c) for r, c in zip(reference, candidate, strict=True)]
    check = Int8Check(float(np.mean(scores)), float(np.min(scores)), len(scores), calibration_images)
    logger.info("INT8 vs fp32: lesion-mask Dice %.4f (worst %.4f) on %d validation images", check.dice, check.worst, check.images)
    if check.dice < MIN_AGREEMENT:
        raise ConfigError(
            f"--precision int8 refused: the INT8 model's lesion masks agree with fp32 at Dice {check.dice:.4f} "
            f"(worst image {check.worst:.4f}) on {check.images} validation images, below {MIN_AGREEMENT}; "
            "predict with --precision fp32 (or bf16 on a CPU with AVX512-BF16 / AMX)"
        )
    return check


def quantize(model: Path | Any, calibration: Sequence[torch.Tensor | np.ndarray]) -> Any:
    """NNCF post-training quantisation of an ONNX file (or an OpenVINO model) on ``calibration`` inputs.

    The one place NNCF is called: ``--precision int8`` and the bench's INT8 rows share it.

    Args:
        model: the ONNX file, or an ``openvino.Model`` already read (e.g. reshaped to static shapes).
        calibration: preprocessed input batches (not the images the agreement check scores).

    Returns:
        the quantised ``openvino.Model``.
    """
    import nncf
    import openvino as ov

    if isinstance(model, (str, Path)):
        model = ov.Core().read_model(str(model))
    batches = [np.ascontiguousarray(x.numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float32) for x in calibration]
    return nncf.quantize(model, nncf.Dataset(batches), subset_size=len(batches))
