"""The README's main job, `sum-monai demo`, runs end to end (shortened: plumbing, not accuracy).

Its accuracy and duration at full length (Dice >= 0.85 on held-out phantoms in under 5 minutes)
are measured by running it, and quoted in the README; a test cannot time it honestly.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="2", MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlruns.db'}")
    done = subprocess.run(
        [sys.executable, "-m", "sum_monai", "demo", "--out", str(tmp_path / "demo"), "--cases", "16", "--epochs", "2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "sum_monai demo summary" in out and "mean Dice (test lesions)" in out
    assert "max |diff| 0.00e+00" in out, "TorchScript export reproduces the checkpoint exactly"
    demo = tmp_path / "demo"
    for path in (
        "phantoms_us/overview.png", "phantoms_mammo/overview.png", "phantoms_mri/overview.png",
        "run/models/model.pt", "run/models/model.ts", "run/learning_curve.png",
        "run/evaluation-test/per_case.csv", "run/evaluation-test/overlays.png",
    ):  # fmt: skip
        assert (demo / path).is_file(), path
    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    versions = client.search_model_versions("name='breast_us_seg_2d'")
    assert len(versions) == 1
    runs = client.search_runs([client.get_experiment_by_name("breast_us_seg_2d").experiment_id])
    assert sorted(r.data.tags.get("workflow") for r in runs) == ["evaluate", "train"]
