"""Training benchmark: the ultrasound bundle's own trainer against a naive loop, same model and data.

* **Bundle trainer**: ``breast_us_seg_2d/configs/train.json`` run through
  ``sum_monai.bundle.run.create_workflow`` (``CacheDataset`` keeps the deterministic transforms'
  output, ``ThreadDataLoader`` runs the random ones in a background thread). Ignite ``Timer``s on
  ``GET_BATCH_STARTED/COMPLETED`` (data) and ``ITERATION_STARTED/COMPLETED`` (compute, including
  the trainer's post-processing and metric handlers) split each iteration.
* **Naive loop** (what the seed projects did): a plain ``torch.utils.data.Dataset`` that opens the
  PNGs with PIL on every access and applies the same transforms (the bundle's own, after its
  loader) eagerly per item, a plain ``DataLoader``, and a hand-written loop (that is the point of
  the comparison) with the same network, loss, optimiser, batch size and threads.

Each loop runs in its own fresh process (``spawn``), so their peak RSS (``ru_maxrss``) is their own.
The first epoch is warm-up (kernel selection, the first buffer) and is reported apart.
"""

from __future__ import annotations

import multiprocessing
import resource
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.machine import Machine
from bench.report import fmt, table

BUNDLE = "breast_us_seg_2d"
IMAGE_SIZE = 256
TARGET_DATA_SHARE = 0.10


@dataclass
class Settings:
    """What a training run uses; ``quick`` runs 2 epochs on 16 cases."""

    threads: int = 2
    quick: bool = False
    workdir: Path = Path("runs/bench")

    @property
    def epochs(self) -> int:
        return 2 if self.quick else 5

    @property
    def cases(self) -> int:
        return 16 if self.quick else 64


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process (all threads): less sensitive to other load than wall time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def _overrides(datalist: str, out: str, epochs: int) -> dict[str, Any]:
    return {
        "data_list_file_path": datalist, "ckpt_dir": f"{out}/models", "output_dir": f"{out}/eval",
        "epochs": epochs, "image_size": IMAGE_SIZE, "val_interval": epochs + 1,  # training only: no validation
    }  # fmt: skip


#: The bundle's loader swapped for a plain DataLoader: no background prefetch thread, which on 2
#: cores competes with the training threads (an extra row, to show what the thread costs or buys).
PLAIN_LOADER = {
    "train#dataloader": {
        "_target_": "DataLoader", "dataset": "@train#dataset", "batch_size": "@batch_size", "shuffle": True, "num_workers": 0,
    }
}  # fmt: skip


def bundle_loop(datalist: str, threads: int, epochs: int, plain_loader: bool = False, precision: str = "fp32") -> dict:
    """Run the bundle's trainer with Ignite timers; per-epoch data / compute / wall seconds.

    Args:
        datalist: datalist JSON (its ``training`` split is used).
        threads: torch intra-op threads.
        epochs: epochs to run.
        plain_loader: replace the bundle's ``ThreadDataLoader`` by a plain ``DataLoader``.
        precision: the bundle's ``precision`` setting (``bf16``: autocast on a CPU that has it).
    """
    from ignite.engine import Events
    from ignite.handlers import Timer

    from bench.machine import set_threads
    from sum_monai.bundle.locate import Bundle
    from sum_monai.bundle.run import create_workflow

    set_threads(threads)
    rss_start = _peak_rss_mb()
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        overrides = _overrides(datalist, out, epochs) | (PLAIN_LOADER if plain_loader else {}) | {"precision": precision}
        wf = create_workflow(Bundle.find(BUNDLE), "train", overrides)
        wf.initialize()
        trainer = wf.parser.get_parsed_content("train#trainer")  # builds the CacheDataset (fills the cache)
        setup = time.perf_counter() - start
        data, compute = Timer(average=False), Timer(average=False)
        data.attach(
            trainer,
            start=Events.EPOCH_STARTED,
            resume=Events.GET_BATCH_STARTED,
            pause=Events.GET_BATCH_COMPLETED,
        )
        compute.attach(
            trainer,
            start=Events.EPOCH_STARTED,
            resume=Events.ITERATION_STARTED,
            pause=Events.ITERATION_COMPLETED,
        )
        # Timer.reset() leaves a timer running: hold both until their first resume event
        trainer.add_event_handler(Events.EPOCH_STARTED, lambda _: (data.pause(), compute.pause()))
        epochs_out: list[dict] = []
        began: list[tuple[float, float]] = []
        trainer.add_event_handler(
            Events.EPOCH_STARTED, lambda _: began.append((time.perf_counter(), _cpu_seconds()))
        )

        def record(engine: Any) -> None:
            epochs_out.append({
                "data": data.value(), "compute": compute.value(), "wall": time.perf_counter() - began[-1][0],
                "cpu": _cpu_seconds() - began[-1][1],
                "iterations": engine.state.epoch_length, "samples": len(engine.data_loader.dataset),
            })  # fmt: skip

        trainer.add_event_handler(Events.EPOCH_COMPLETED, record)
        rss_ready = _peak_rss_mb()
        wf.run()
        wf.finalize()
    return {
        "epochs": epochs_out,
        "setup": setup,
        "rss_start": rss_start,
        "rss_ready": rss_ready,
        "peak_rss": _peak_rss_mb(),
    }


class PngDataset:
    """Plain map-style dataset: reads the PNGs with PIL on every access, transforms eagerly (seed style)."""

    def __init__(self, items: list[dict], transform: Any) -> None:
        self.items = items
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    @staticmethod
    def _read(path: str) -> Any:
        import numpy as np
        import torch
        from PIL import Image

        # (W, H) like MONAI's PILReader, so the bundle's transforms see the same layout
        return torch.from_numpy(np.asarray(Image.open(path).convert("L"), dtype=np.float32).T.copy())

    def __getitem__(self, i: int) -> dict:
        import torch

        item = self.items[i]
        labels = item["label"] if isinstance(item["label"], list) else [item["label"]]
        data = {
            "image": self._read(item["image"])[None],
            "label": torch.stack([self._read(p) for p in labels]),
        }
        return self.transform(data)


def naive_loop(datalist: str, threads: int, epochs: int) -> dict:
    """Seed-project loop: plain Dataset re-reading PNGs, DataLoader, forward / backward / step by hand."""
    import torch
    from monai.data import load_decathlon_datalist
    from monai.transforms import Compose
    from monai.utils import set_determinism

    from bench.machine import set_threads
    from sum_monai.bundle.locate import Bundle
    from sum_monai.bundle.run import create_workflow

    set_threads(threads)
    rss_start = _peak_rss_mb()
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        parser = create_workflow(Bundle.find(BUNDLE), "train", _overrides(datalist, out, epochs)).parser
        set_determinism(seed=int(parser.get_parsed_content("seed")))
        net = parser.get_parsed_content("network")
        loss_fn = parser.get_parsed_content("loss")
        optimizer = parser.get_parsed_content("optimizer")
        # the bundle's own transforms after its LoadImaged, applied per item on every access
        from monai.transforms import LoadImaged

        steps = list(parser.get_parsed_content("train#preprocessing").transforms)
        first = next(i for i, s in enumerate(steps) if isinstance(s, LoadImaged)) + 1
        transforms = Compose(steps[first:])
        items = load_decathlon_datalist(datalist, True, "training")
        loader = torch.utils.data.DataLoader(
            PngDataset(items, transforms),
            batch_size=int(parser.get_parsed_content("batch_size")),
            shuffle=True,
            num_workers=0,
        )
        setup = time.perf_counter() - start
        rss_ready = _peak_rss_mb()
        epochs_out = []
        for _ in range(epochs):
            net.train()
            data_s = compute_s = 0.0
            began, cpu = time.perf_counter(), _cpu_seconds()
            batches = iter(loader)
            iterations = 0
            while True:
                t0 = time.perf_counter()
                batch = next(batches, None)
                t1 = time.perf_counter()
                data_s += t1 - t0
                if batch is None:
                    break
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(net(batch["image"]), batch["label"])
                loss.backward()
                optimizer.step()
                compute_s += time.perf_counter() - t1
                iterations += 1
            epochs_out.append({
                "data": data_s, "compute": compute_s, "wall": time.perf_counter() - began, "cpu": _cpu_seconds() - cpu,
                "iterations": iterations, "samples": len(items),
            })  # fmt: skip
    return {
        "epochs": epochs_out,
        "setup": setup,
        "rss_start": rss_start,
        "rss_ready": rss_ready,
        "peak_rss": _peak_rss_mb(),
    }


def run(s: Settings) -> dict:
    """Both loops on the same ultrasound phantoms, each in its own spawned process, one after the other."""
    from bench.models import phantoms
    from sum_monai.utils.precision import cpu_bf16_native
    from sum_monai.workflows.data import prepare_datalist

    data = phantoms("us", s.cases, s.workdir / BUNDLE / "phantoms_train", seed=0)
    out = s.workdir / BUNDLE / "train_bench"
    out.mkdir(parents=True, exist_ok=True)
    datalist = str(prepare_datalist(data, out, seed=0).resolve())
    results = {}
    ctx = multiprocessing.get_context("spawn")
    loops = {
        "bundle": (bundle_loop, (False,)), "bundle_plain_loader": (bundle_loop, (True,)), "naive": (naive_loop, ())
    }  # fmt: skip
    if cpu_bf16_native():  # elsewhere precision bf16 falls back to fp32: the row would repeat the first
        loops["bundle_bf16"] = (bundle_loop, (False, "bf16"))
    for name, (fn, extra) in loops.items():
        args = (datalist, s.threads, s.epochs, *extra)
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            results[name] = pool.submit(fn, *args).result()
    return {"results": results, "epochs": s.epochs, "cases": s.cases}


def summary(res: dict) -> dict:
    """Steady-state figures (epochs after the first): medians per iteration, samples/s, data share."""
    steady = res["epochs"][1:] or res["epochs"]
    per_it = [(e["data"] / e["iterations"], e["compute"] / e["iterations"]) for e in steady]
    data_it = statistics.median(d for d, _ in per_it)
    compute_it = statistics.median(c for _, c in per_it)
    sps = statistics.median(e["samples"] / e["wall"] for e in steady)
    cpu_per_sample = statistics.median(e["cpu"] / e["samples"] for e in steady)
    first = res["epochs"][0]
    return {
        "data_it": data_it, "compute_it": compute_it, "share": data_it / (data_it + compute_it), "sps": sps, "cpu_per_sample": cpu_per_sample,
        "epoch_s": statistics.median(e["wall"] for e in steady), "first_epoch_s": first["wall"],
        "iterations": first["iterations"], "samples": first["samples"], "setup": res["setup"],
        "peak_rss": res["peak_rss"], "rss_start": res["rss_start"],
    }  # fmt: skip


def render(machine: Machine, out: dict, command: str) -> str:
    """Markdown section of the training benchmark with the verdict against the 10 % data-share target."""
    b, n = summary(out["results"]["bundle"]), summary(out["results"]["naive"])
    p = summary(out["results"]["bundle_plain_loader"])
    headers = ["loop", "data s/iter", "compute s/iter", "data share", "samples/s", "CPU s/sample", "epoch s", "first epoch s",
               "setup s", "peak RSS MB"]  # fmt: skip
    rows = [
        [label, fmt(r["data_it"], 3), fmt(r["compute_it"], 3), f"{100 * r['share']:.1f} %", fmt(r["sps"]), fmt(r["cpu_per_sample"], 2),
         fmt(r["epoch_s"]), fmt(r["first_epoch_s"]), fmt(r["setup"]), fmt(r["peak_rss"], 0)]
        for label, r in (("bundle trainer (CacheDataset + ThreadDataLoader)", b),
                         ("bundle trainer, plain DataLoader (no prefetch thread)", p),
                         ("naive (plain Dataset, PIL every epoch, DataLoader)", n))
    ]  # fmt: skip
    if "bundle_bf16" in out["results"]:
        f = summary(out["results"]["bundle_bf16"])
        rows.append(["bundle trainer, --precision bf16 (autocast, channels-last)", fmt(f["data_it"], 3), fmt(f["compute_it"], 3),
                     f"{100 * f['share']:.1f} %", fmt(f["sps"]), fmt(f["cpu_per_sample"], 2), fmt(f["epoch_s"]),
                     fmt(f["first_epoch_s"]), fmt(f["setup"]), fmt(f["peak_rss"], 0)])  # fmt: skip
        bf16_line = f"bf16 training: {f['sps'] / b['sps']:.2f}x the fp32 bundle trainer's samples/s ({f['sps']:.1f} vs {b['sps']:.1f})."
    else:
        bf16_line = ("bf16 training: not measured on this CPU (no AVX512-BF16 or AMX; `--precision bf16` falls back to "
                     "fp32 here, so the row would repeat the first).")  # fmt: skip
    met = "met" if b["share"] <= TARGET_DATA_SHARE else "not met"
    return "\n".join([
        "## Training (breast_us_seg_2d, 256x256, batch 8)", "", f"Command: `{command}`", "", machine.header(), "",
        f"{out['cases']} ultrasound phantom cases ({b['samples']} in the training split, {b['iterations']} "
        f"iterations per epoch), {out['epochs']} epochs per loop, validation off; medians over epochs 2-{out['epochs']} "
        "(epoch 1 is warm-up and shown apart). 'CPU s/sample' is the process's user + system CPU time (all threads) "
        "per sample: less sensitive to other processes on a shared machine than wall time. 'setup' is config "
        "parsing plus, for the bundle, filling the cache. "
        "Peak RSS is each loop's own process (`ru_maxrss`); a bare process with torch and MONAI imported "
        f"already holds about {b['rss_start']:.0f} MB.",
        "",
        table(headers, rows),
        "",
        f"**Target (data <= 10 % of each iteration): {met}**: {100 * b['share']:.1f} % with the bundle trainer "
        f"(naive loop: {100 * n['share']:.1f} %). Bundle trainer {b['sps'] / n['sps']:.2f}x the naive loop's "
        f"samples/s ({b['sps']:.1f} vs {n['sps']:.1f}).",
        "",
        bf16_line,
    ])  # fmt: skip
