"""The floating-point precision a network runs in, chosen from what the device offers.

The rules are the bundles' own (``scripts/precision.py``, canonical copy
:mod:`sum_monai.bundle.bundle_scripts.precision`), so ``sum-monai predict`` and a bundle run by
MONAI alone pick the same precision. ``auto`` never picks a precision the hardware only emulates:
on a CPU without AVX512-BF16 or AMX, bf16 matmuls and convolutions run several times *slower*
than fp32 (measured here: the ultrasound UNet at 3.9 img/s in bf16 vs 45 img/s fp32 on an
AVX2-only EPYC), so a request for bf16 there falls back to fp32 and says why. On CUDA ``auto`` is
bf16 autocast where the GPU supports it, else fp16. On a CPU with native bf16 ``auto`` stays fp32
until the bundle's agreement with fp32 is measured on that CPU (``python -m bench predict``);
``bf16`` is the documented fast path there.

Example:
    >>> p = resolve_precision("bf16", "cpu")  # doctest: +SKIP
    >>> p.name, p.reason  # doctest: +SKIP
    ('fp32', 'bf16 requested, but this CPU has no AVX512-BF16 or AMX (bf16 would be emulated, slower than fp32)')
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from sum_monai.bundle.bundle_scripts.precision import (
    BF16_FLAGS,
    PRECISIONS,
    channels_last,
    cpu_bf16_native,
    cpu_flags,
    dtype_of,
    resolve,
)

__all__ = ["BF16_FLAGS", "PRECISIONS", "Precision", "cpu_bf16_native", "cpu_flags", "resolve_precision"]

@dataclass(frozen=True)
class Precision:
    """A resolved precision: what runs, on which device type, and why.

    Attributes:
        name: ``fp32``, ``bf16`` or ``fp16`` (what actually runs).
        requested: what was asked for (``auto`` ...).
        device_type: ``cpu`` or ``cuda``.
        reason: one line for the log and the case JSON.
    """

    name: str
    requested: str
    device_type: str
    reason: str

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype, None for fp32."""
        return dtype_of(self.name)

    @property
    def channels_last(self) -> bool:
        """bf16 on a CPU runs its oneDNN convolutions on channels-last inputs; fp32 stays as it is
        (measured on an AVX2 EPYC: no steady gain in fp32, 5.3-6.2 img/s either way)."""
        return self.device_type == "cpu" and self.name == "bf16"

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """``torch.autocast`` for this precision (nothing for fp32)."""
        if self.dtype is None:
            yield
            return
        with torch.autocast(self.device_type, dtype=self.dtype):
            yield

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the memory format this precision runs fastest with (4D / 5D batches)."""
        return channels_last(x) if self.channels_last else x


def resolve_precision(requested: str, device: Any) -> Precision:
    """What ``requested`` (one of :data:`PRECISIONS`) becomes on ``device`` (never an emulated one).

    Raises:
        ValueError: an unknown precision name.
    """
    name, reason = resolve(requested, device)
    return Precision(name, requested, torch.device(device).type, reason)
