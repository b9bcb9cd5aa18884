"""``sum-monai demo``: the whole pipeline on built-in phantoms, on any machine, in minutes.

1. phantoms of each modality (overview PNGs), 2. a leakage-free datalist of the ultrasound
phantoms, 3. training of ``breast_us_seg_2d`` (its own train.json, shortened by overrides),
4. evaluation on the held-out test phantoms with overlays, 5. TorchScript export checked against
the checkpoint, 6. the MLflow run with its registered model; then a summary table.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sum_monai.bundle.locate import REPO_BUNDLES, Bundle

#: Demo recipe: overrides of the ultrasound bundle's train.json that fit a 2-core CPU in minutes.
DEMO_CONFIG = REPO_BUNDLES.parent / "configs" / "demo_us.json"
DEMO_CASES = 100


def demo_recipe() -> dict[str, Any]:
    """The overrides in ``configs/demo_us.json`` (keys starting with ``_`` are comments)."""
    content = json.loads(DEMO_CONFIG.read_text())
    return {k: v for k, v in content.items() if not k.startswith("_") or k.startswith("_meta_#")}


@dataclass
class DemoResult:
    """Figures and paths the demo prints."""

    out_dir: Path
    test_dice: float
    test_cases: int
    torchscript_max_abs_diff: float
    timings: dict[str, float] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)
    registered: str = ""
    tracking_uri: str = ""
    table: str = ""


def torchscript_matches(bundle: Bundle, model_ts: Path, shape: list[int]) -> float:
    """Max absolute difference between a trained bundle's checkpoint (eager) and its TorchScript export."""
    import torch

    from sum_monai.bundle.weights import load_checked_state_dict, network_from_bundle

    net = network_from_bundle(bundle)
    net.load_state_dict(load_checked_state_dict(bundle, network=net))
    net.eval()
    scripted = torch.jit.load(str(model_ts), map_location="cpu").eval()
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return float((net(x) - scripted(x)).abs().max())


def run_demo(
    out_dir: str | Path = "demo_output",
    n_cases: int = DEMO_CASES,
    epochs: int | None = None,
    seed: int = 0,
    tracking_uri: str | None = None,
    device: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> DemoResult:
    """Run the demo into ``out_dir`` (replacing an earlier demo there); see the module docstring."""
    from sum_monai.phantoms import generate
    from sum_monai.workflows.evaluate import evaluate
    from sum_monai.workflows.train import train

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    paths: dict[str, Path] = {}

    t0 = time.perf_counter()
    for modality, n in (("mammo", 3), ("mri", 2)):
        folder = out / f"phantoms_{modality}"
        generate(modality, n, folder, seed=seed, overwrite=True)
        paths[f"{modality} phantoms overview"] = folder / "overview.png"
    us = out / "phantoms_us"
    generate("us", n_cases, us, seed=seed, overwrite=True)
    paths["us phantoms overview"] = us / "overview.png"
    timings["phantoms"] = time.perf_counter() - t0

    bundle = Bundle.find("breast_us_seg_2d")
    recipe = {**demo_recipe(), **(overrides or {})}
    epochs = int(epochs or recipe.pop("epochs"))
    recipe.pop("epochs", None)
    t0 = time.perf_counter()
    run_dir = out / "run"
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    trained = train(
        bundle, data=us, output=run_dir, epochs=epochs, device=device, tracking_uri=tracking_uri,
        overrides=recipe, seed=seed,
    )  # fmt: skip
    timings["training"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    evaluated = evaluate(bundle, run=run_dir, split="test", device=device, tracking_uri=tracking_uri)
    timings["evaluation"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    size = int(recipe["image_size"])
    diff = torchscript_matches(Bundle(trained.trained_bundle), trained.model_ts, [1, 1, size, size])
    timings["export check"] = time.perf_counter() - t0

    overall = evaluated.summary.get("all", {})
    paths.update(
        {
            "learning curve": trained.learning_curve,
            "overlays (test)": evaluated.overlays_png or Path("-"),
            "per-case metrics": evaluated.per_case_csv,
            "weights": trained.model_pt,
            "TorchScript": trained.model_ts,
            "trained bundle": trained.trained_bundle,
            "bundle archive": trained.archive,
        }
    )
    return DemoResult(
        out_dir=out,
        test_dice=float(overall.get("dice", np.nan)),
        test_cases=_lesion_cases(evaluated.per_case_csv),
        torchscript_max_abs_diff=diff,
        timings=timings,
        paths=paths,
        registered=f"{trained.registered_model} version {trained.registered_version}",
        tracking_uri=trained.tracking_uri,
        table=evaluated.table,
    )


def _lesion_cases(per_case_csv: Path) -> int:
    """Number of test cases with a lesion (a Dice value) in the per-case table."""
    import csv

    with per_case_csv.open() as f:
        return sum(1 for row in csv.DictReader(f) if row.get("dice") not in ("", "nan", None))
