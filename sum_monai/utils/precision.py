"""The floating-point precision a network runs in, chosen from what the device offers.

``auto`` never picks a precision the hardware only emulates: on a CPU without AVX512-BF16 or AMX,
bf16 matmuls and convolutions run several times *slower* than fp32 (measured here: the ultrasound
UNet at 3.9 img/s in bf16 vs 45 img/s fp32 on an AVX2-only EPYC), so a request for bf16 there
falls back to fp32 and says why. On CUDA ``auto`` is bf16 autocast where the GPU supports it, else
fp16. On a CPU with native bf16 ``auto`` stays fp32 until the bundle's agreement with fp32 is
measured on that CPU (``python -m bench predict``); ``bf16`` is the documented fast path there.

Example:
    >>> p = resolve_precision("bf16", "cpu")  # doctest: +SKIP
    >>> p.name, p.reason  # doctest: +SKIP
    ('fp32', 'bf16 requested, but this CPU has no AVX512-BF16 or AMX (bf16 would be emulated, slower than fp32)')
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

__all__ = ["BF16_FLAGS", "PRECISIONS", "Precision", "cpu_bf16_native", "cpu_flags", "resolve_precision"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: ``/proc/cpuinfo`` flags of hardware bf16 matrix arithmetic.
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's flags from ``/proc/cpuinfo`` (empty where there is none)."""
    info = Path("/proc/cpuinfo")
    if not info.is_file():
        return frozenset()
    for line in info.read_text().splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_bf16_native() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX-BF16)."""
    return bool(BF16_FLAGS & cpu_flags())


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
        return _DTYPES.get(self.name)

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
        if not self.channels_last or x.dim() not in (4, 5):
            return x
        return x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)


def resolve_precision(requested: str, device: Any) -> Precision:
    """What ``requested`` (one of :data:`PRECISIONS`) becomes on ``device`` (never an emulated one).

    Raises:
        ValueError: an unknown precision name.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}; one of {', '.join(PRECISIONS)}")
    kind = torch.device(device).type
    if requested == "fp32":
        return Precision("fp32", requested, kind, "fp32 requested")
    if kind == "cuda":
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        if requested == "fp16" or not bf16:
            why = "fp16 requested" if requested == "fp16" else "this GPU has no bf16: fp16 autocast"
            return Precision("fp16", requested, kind, why)
        return Precision("bf16", requested, kind, f"{requested}: bf16 autocast on the GPU")
    if requested == "fp16":
        return Precision("fp32", requested, kind, "fp16 requested, but fp16 is for GPUs: fp32 on the CPU")
    if not cpu_bf16_native():
        why = "this CPU has no AVX512-BF16 or AMX (bf16 would be emulated, slower than fp32)"
        return Precision("fp32", requested, kind, f"bf16 requested, but {why}" if requested == "bf16" else f"auto: fp32; {why}")
    if requested == "bf16":
        return Precision("bf16", requested, kind, "bf16 autocast and channels-last on a CPU with native bf16")
    return Precision("fp32", requested, kind, "auto: fp32 (this CPU has native bf16: --precision bf16 is faster)")
