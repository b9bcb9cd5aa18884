"""What machine a benchmark ran on, and how fast its matrix units are (measured in the same run).

The fp32 matmul figure is the yardstick of the inference tables: a backend's achieved GFLOP/s is
reported as a fraction of it. bf16 and int8 peaks are measured too, because reduced-precision
backends can exceed 100 % of the fp32 figure on a CPU with AVX512_BF16 / AVX512_VNNI.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

#: CPU flags that decide which backends and precisions can be fast.
INTERESTING_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8")
#: Library versions quoted with every table.
PACKAGES = ("torch", "monai", "pytorch-ignite", "onnxruntime", "openvino", "nncf", "numpy")


def cpu_model() -> str:
    """CPU model name from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    info = Path("/proc/cpuinfo")
    if info.is_file():
        for line in info.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    """The :data:`INTERESTING_FLAGS` this CPU reports (read by :func:`sum_monai.utils.precision.cpu_flags`)."""
    from sum_monai.utils.precision import cpu_flags as all_flags

    flags = all_flags()
    return [f for f in INTERESTING_FLAGS if f in flags]


def versions() -> dict[str, str]:
    """Installed versions of :data:`PACKAGES` (``-`` when absent) and Python."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "-"
    return out


def set_threads(threads: int) -> None:
    """Use ``threads`` intra-op threads in torch (and in libraries that read ``OMP_NUM_THREADS``)."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def matmul_peak(dtype: torch.dtype = torch.float32, n: int = 4096, repeats: int = 5, budget_s: float = 2.0) -> float:
    """Best achieved GFLOP/s of ``torch.matmul`` on two ``n x n`` matrices of ``dtype``.

    ``torch.int8`` uses ``torch._int_mm`` (int8 x int8 -> int32, the VNNI path). Counts
    ``2 n^3`` operations per product (a multiply-add is two). Uses the current torch thread count.
    A CPU without native support for a dtype (bf16 without AVX512-BF16/AMX, int8 without VNNI)
    runs it orders of magnitude slower: a 512 x 512 probe sizes ``n`` down so that one product
    takes about ``budget_s`` (never below 512, which is still far above cache-bound sizes).
    """
    probe = _matmul_rate(dtype, 512, 1)
    affordable = (budget_s * probe * 1e9 / 2.0) ** (1.0 / 3.0)
    size = int(max(512, min(n, affordable // 256 * 256)))
    return max(probe, _matmul_rate(dtype, size, repeats))


def _matmul_rate(dtype: torch.dtype, n: int, repeats: int) -> float:
    """GFLOP/s of the best of ``repeats`` products of two ``n x n`` matrices (after a warm-up)."""
    gen = torch.Generator().manual_seed(0)
    if dtype == torch.int8:
        a = torch.randint(-100, 100, (n, n), dtype=torch.int8, generator=gen)
        b = torch.randint(-100, 100, (n, n), dtype=torch.int8, generator=gen)

        def mm() -> torch.Tensor:
            return torch._int_mm(a, b)
    else:
        a = torch.randn(n, n, generator=gen).to(dtype)
        b = torch.randn(n, n, generator=gen).to(dtype)

        def mm() -> torch.Tensor:
            return torch.matmul(a, b)

    mm()  # warm-up: allocations, kernel selection
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        mm()
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best / 1e9


@dataclass
class Machine:
    """The machine and load a table was measured on, plus the measured matmul peaks (GFLOP/s)."""

    cpu: str
    cores: int
    threads: int
    flags: list[str]
    versions: dict[str, str]
    load_before: tuple[float, float, float]
    peaks: dict[str, float] = field(default_factory=dict)
    load_after: tuple[float, float, float] | None = None

    def header(self) -> str:
        """Markdown lines describing the machine (quoted above every table)."""
        v = self.versions
        libs = ", ".join(f"{k} {v[k]}" for k in ("python", *PACKAGES) if k in v)
        peaks = ", ".join(f"{k} {g:.0f} GFLOP/s" for k, g in self.peaks.items())
        load = " / ".join(f"{x:.2f}" for x in self.load_before)
        if self.load_after is not None:
            load += "; after: " + " / ".join(f"{x:.2f}" for x in self.load_after)
        lines = [
            f"- CPU: {self.cpu}, {self.cores} cores, flags {' '.join(self.flags) or '-'}; threads used: {self.threads}",
            f"- libraries: {libs}",
            f"- load average before the run (1/5/15 min): {load} ({self.cores} cores: above {self.cores} "
            "means other processes shared the CPU)",
        ]
        if peaks:
            lines.append(
                f"- matmul peak measured in this run ({self.threads} threads, 4096x4096 or smaller where a dtype is slow, best of 5 before and 5 after "
                f"the models; fp32 also once per timing round between them): {peaks}"
            )
        return "\n".join(lines)


def describe(threads: int, peaks: tuple[str, ...] = ()) -> Machine:
    """Describe this machine; measure the matmul peaks named in ``peaks`` (``fp32``, ``bf16``, ``int8``)."""
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": torch.int8}
    machine = Machine(
        cpu=cpu_model(), cores=os.cpu_count() or 1, threads=threads, flags=cpu_flags(),
        versions=versions(), load_before=os.getloadavg(),
    )  # fmt: skip
    for name in peaks:
        machine.peaks[name] = matmul_peak(dtypes[name])
    return machine
