"""The bundle's ``precision`` setting: what the network computes in on the device it runs on.

``precision`` (``auto``, ``fp32``, ``bf16``, ``fp16``) replaces a CUDA-only ``amp`` flag in the
configs. It never picks a precision the hardware only emulates:

- CUDA: ``auto`` and ``bf16`` are bf16 autocast where the GPU supports it, else fp16; ``fp16`` is
  fp16. MONAI's engines do this themselves (``amp=True`` with ``amp_kwargs={"dtype": ...}``).
- CPU with AVX512-BF16 or AMX (``/proc/cpuinfo`` flags): ``bf16`` is bf16 autocast with
  channels-last inputs. MONAI's engines autocast on CUDA only, so :func:`network_for` wraps the
  network in :class:`CpuAutocast` instead. ``auto`` stays fp32 on a CPU until a bundle's agreement
  with fp32 has been measured there.
- CPU without them: always fp32 (emulated bf16 runs several times slower than fp32), and the log
  says why.

Config use (``train.json``; ``inference.json`` alike)::

    "precision": "auto",
    "engine_network": {"_target_": "scripts.precision.network_for",
                       "network": "@network", "precision": "@precision", "device": "@device"},
    "trainer": {..., "network": "@engine_network",
                "amp": {"_target_": "scripts.precision.cuda_amp", "precision": "@precision", "device": "@device"},
                "amp_kwargs": {"_target_": "scripts.precision.amp_kwargs", "precision": "@precision", "device": "@device"}}

``engine_network`` shares its parameters with ``network``: checkpoints keep saving ``@network``.

This file is synced from ``sum_monai/bundle/bundle_scripts/precision.py``; edit it there.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: ``/proc/cpuinfo`` flags of hardware bf16 matrix arithmetic.
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
logger = logging.getLogger(__name__)


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


def resolve(requested: str, device: Any) -> tuple[str, str]:
    """What ``requested`` becomes on ``device`` (a ``torch.device`` or a string such as ``"cpu"``).

    Returns:
        the precision that runs (``fp32``, ``bf16`` or ``fp16``) and one line saying why.

    Raises:
        ValueError: an unknown precision name.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}; one of {', '.join(PRECISIONS)}")
    kind = torch.device(device).type
    if requested == "fp32":
        return "fp32", "fp32 requested"
    if kind == "cuda":
        if requested == "fp16":
            return "fp16", "fp16 requested"
        if not (torch.cuda.is_available() and torch.cuda.is_bf16_supported()):
            return "fp16", "this GPU has no bf16: fp16 autocast"
        return "bf16", f"{requested}: bf16 autocast on the GPU"
    if requested == "fp16":
        return "fp32", "fp16 requested, but fp16 is for GPUs: fp32 on the CPU"
    if not cpu_bf16_native():
        why = "this CPU has no AVX512-BF16 or AMX (bf16 would be emulated, slower than fp32)"
        return "fp32", f"bf16 requested, but {why}" if requested == "bf16" else f"auto: fp32; {why}"
    if requested == "bf16":
        return "bf16", "bf16 autocast and channels-last on a CPU with native bf16"
    return "fp32", "auto: fp32 (this CPU has native bf16: precision bf16 is faster)"


def dtype_of(name: str) -> torch.dtype | None:
    """The autocast dtype of a resolved precision (None for fp32)."""
    return _DTYPES.get(name)


def cuda_amp(precision: str, device: Any) -> bool:
    """MONAI engines' ``amp``: autocast on CUDA when ``precision`` resolves to fp16 or bf16 there."""
    return torch.device(device).type == "cuda" and resolve(precision, device)[0] != "fp32"


def amp_kwargs(precision: str, device: Any) -> dict[str, Any]:
    """MONAI engines' ``amp_kwargs``: the CUDA autocast dtype (empty off CUDA)."""
    dtype = dtype_of(resolve(precision, device)[0]) if torch.device(device).type == "cuda" else None
    return {} if dtype is None else {"dtype": dtype}


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """A 4D / 5D batch in channels-last memory order (oneDNN's fast bf16 layout); others unchanged."""
    if x.dim() not in (4, 5):
        return x
    return x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)


class CpuAutocast(torch.nn.Module):
    """``network`` run under CPU bf16 autocast on channels-last inputs, returning fp32 outputs.

    The loss, metrics and post-processing then see fp32 as they do without it; the parameters
    stay fp32 (autocast casts per operation) and are ``network``'s own.

    Args:
        network: the module to run.
    """

    #: a marker for code that must not import this module (an ensemble wraps its members alike)
    cpu_autocast = True

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = self.network(channels_last(x), *args, **kwargs)
        if isinstance(out, torch.Tensor):
            return out.float()
        if isinstance(out, (list, tuple)):
            return type(out)(o.float() if isinstance(o, torch.Tensor) else o for o in out)
        return out


def network_for(network: torch.nn.Module, precision: str, device: Any) -> torch.nn.Module:
    """The module MONAI's engines should call: :class:`CpuAutocast` for CPU bf16, else ``network``.

    On CUDA the engines autocast themselves (:func:`cuda_amp`); logs what runs and why.
    """
    name, why = resolve(precision, device)
    logger.info("precision %s (%s)", name, why)
    if name == "bf16" and torch.device(device).type == "cpu":
        return CpuAutocast(network)
    return network
