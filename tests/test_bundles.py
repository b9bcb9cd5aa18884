"""Offline checks of every bundle: schema, network shapes, workflow properties, exports, scripts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from sum_monai.bundle.export import example_input_shape, export_onnx, export_torchscript
from sum_monai.bundle.locate import REPO_BUNDLES, Bundle
from sum_monai.bundle.run import create_workflow
from sum_monai.bundle.sync import bundles_in, stale_scripts
from sum_monai.bundle.verify import verify_bundle

BUNDLE_NAMES = [p.name for p in bundles_in(REPO_BUNDLES)]
#: small spatial sizes for quick forward passes (the network is size-agnostic)
SMALL_INPUT = {2: [64, 64], 3: [32, 32, 16]}


def test_three_bundles_exist() -> None:
    assert set(BUNDLE_NAMES) >= {"breast_us_seg_2d", "mammo_seg_2d", "breast_mri_seg_3d"}


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_bundle_layout(name: str) -> None:
    root = REPO_BUNDLES / name
    for part in (
        "configs/metadata.json", "configs/train.json", "configs/evaluate.json", "configs/inference.json",
        "configs/multi_gpu_train.json", "configs/logging.conf", "docs/README.md", "LICENSE", "scripts/__init__.py",
    ):  # fmt: skip
        assert (root / part).is_file(), f"{name} lacks {part}"
    meta = json.loads((root / "configs/metadata.json").read_text())
    for key in ("version", "changelog", "monai_version", "pytorch_version", "numpy_version", "network_data_format"):
        assert meta.get(key), f"{name}: metadata lacks {key}"
    assert meta["version"] in meta["changelog"]
    fmt = meta["network_data_format"]
    assert fmt["inputs"]["image"]["channel_def"] and fmt["outputs"]["pred"]["channel_def"]


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_text_files_pass_the_zoo_pre_commit_basics(name: str) -> None:
    """The model zoo's pre-commit fixes these (end-of-file-fixer, trailing-whitespace, check-json):
    a bundle that needs them fixed fails its CI. Six JSON files once lacked the final newline."""
    root = REPO_BUNDLES / name
    texts = [p for p in root.rglob("*") if p.is_file() and p.suffix in {".json", ".py", ".md", ".conf", ".txt", ".yml", ".yaml"}]
    assert texts
    for path in texts:
        text = path.read_text()
        rel = path.relative_to(root)
        assert text.endswith("\n") and not text.endswith("\n\n"), f"{name}/{rel}: must end with exactly one newline"
        bad = [i + 1 for i, line in enumerate(text.splitlines()) if line != line.rstrip()]
        assert not bad, f"{name}/{rel}: trailing whitespace on lines {bad[:5]}"
        if path.suffix == ".json":
            json.loads(text)


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_shipped_torchscript_carries_this_version_of_the_metadata(name: str) -> None:
    """``models/model.ts`` embeds ``metadata.json`` at export: a version bump re-exports it (the zoo reads it)."""
    root = REPO_BUNDLES / name
    assert (root / "models" / "model.pt").is_file() and (root / "models" / "model.ts").is_file(), f"{name}: no weights"
    extra = {"metadata.json": ""}
    torch.jit.load(str(root / "models" / "model.ts"), _extra_files=extra)
    embedded = json.loads(extra["metadata.json"])
    assert embedded["version"] == json.loads((root / "configs/metadata.json").read_text())["version"]


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_bundle_configs_reference_only_monai_torch_ignite_and_scripts(name: str) -> None:
    """Self-contained: no `_target_` or expression reaches into sum_monai or other packages."""
    for path in (REPO_BUNDLES / name / "configs").glob("*.json"):
        config = json.loads(path.read_text())
        code = [s for s in _strings(config) if s.startswith("$")] + list(_targets(config))
        assert not [c for c in code if "sum_monai" in c], f"{path} executes sum_monai code"

        targets = list(_targets(config))
        foreign = [t for t in targets if "." in t and t.split(".")[0] not in ("monai", "torch", "ignite", "scripts")]
        assert not foreign, f"{path}: {foreign}"


def _strings(node: object) -> Iterator[str]:
    """Every string value in a config tree (``$`` expressions among them)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)


def _targets(node: object) -> Iterator[str]:
    """Every ``_target_`` string in a config tree."""
    if isinstance(node, dict):
        if isinstance(node.get("_target_"), str):
            yield node["_target_"]
        for v in node.values():
            yield from _targets(v)
    elif isinstance(node, list):
        for v in node:
            yield from _targets(v)


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_offline_verification(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """verify_metadata, verify_net_in_out and check_properties pass with the network switched off."""
    import socket

    def no_network(*args: object, **kwargs: object) -> None:
        raise OSError("network access attempted during offline verification")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    report = verify_bundle(Bundle.find(name))
    assert report.ok, report.problems
    assert len(report.checks) == 10


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_shared_scripts_are_in_sync(name: str) -> None:
    assert stale_scripts(REPO_BUNDLES / name) == [], "run `sum-monai bundle sync-scripts`"


@pytest.mark.slow  # 47 s; the same exports are compared with eager in test_exports.py, and verify runs ckpt_export
@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_exports_reproduce_the_checkpoint(name: str, tmp_path: Path) -> None:
    """ckpt_export (TorchScript) and onnx_export reload to the same outputs as the eager network."""
    import onnxruntime as ort

    bundle = Bundle.find(name)
    net = create_workflow(bundle, "inference").parser.get_parsed_content("network_def").eval()
    torch.manual_seed(0)
    ckpt = tmp_path / "model.pt"
    torch.save(net.state_dict(), ckpt)
    shape = example_input_shape(bundle)
    shape = shape[:2] + SMALL_INPUT[len(shape) - 2]
    x = torch.rand(*shape)
    with torch.no_grad():
        expected = net(x)
    ts = torch.jit.load(str(export_torchscript(bundle, ckpt, tmp_path / "model.ts"))).eval()
    with torch.no_grad():
        assert torch.allclose(ts(x), expected, atol=1e-5)
    session = ort.InferenceSession(str(export_onnx(bundle, ckpt, tmp_path / "model.onnx", shape)))
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert got.shape == tuple(expected.shape)
    assert abs(got - expected.numpy()).max() < 1e-3


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_inference_preprocessing_matches_evaluation(name: str) -> None:
    """inference.json repeats the image preprocessing of train/evaluate.json: same transforms, same settings."""
    bundle = Bundle.find(name)
    infer = create_workflow(bundle, "inference").parser
    evaluate = create_workflow(bundle, "evaluate").parser

    settings = ("spatial_size", "size_mode", "pixdim", "axcodes", "lower", "upper", "b_min", "b_max", "reference_channel")

    def describe(transforms: list) -> list[tuple[str, dict[str, str]]]:
        out = []
        for t in transforms:
            if "image" not in getattr(t, "keys", ()):
                continue
            parts = [t, *[v for v in vars(t).values() if callable(v) and hasattr(v, "__dict__")]]
            found = {k: repr(getattr(p, k)) for p in parts for k in settings if hasattr(p, k)}
            out.append((type(t).__name__, found))
        return out

    expected = describe(evaluate.get_parsed_content("validate#preprocessing").transforms)
    got = describe(infer.get_parsed_content("preprocessing").transforms)
    assert got == expected


def test_zoo_rules_catch_a_bundle_that_drifted(tmp_path: Path) -> None:
    """Each rule the model zoo's CI would fail on is reported by our own check, naming the file."""
    import shutil

    from sum_monai.bundle import zoo

    root = tmp_path / "breast_us_seg_2d"
    shutil.copytree(REPO_BUNDLES / "breast_us_seg_2d", root, ignore=shutil.ignore_patterns("__pycache__"))
    bundle = Bundle(root)
    assert zoo.file_problems(bundle) == zoo.card_problems(bundle) == zoo.package_problems(bundle) == []
    # a pin that does not install on Python 3.10, and a package the scripts use left undeclared
    meta = json.loads((root / "configs" / "metadata.json").read_text())
    meta["required_packages_version"]["pillow"] = "13.0.0"
    del meta["required_packages_version"]["scipy"]
    (root / "configs" / "metadata.json").write_text(json.dumps(meta, indent=4) + "\n")
    assert zoo.package_problems(bundle) == [
        "metadata.json: scipy is used (scripts/ or configs/) but not in required_packages_version",
        "metadata.json: pillow==13.0.0 does not install on Python 3.10 (newest there: 12.3.0)",
    ]
    # changed weights that large_files.yml does not describe, a missing licence, a card without its commands
    (root / "models" / "fold1.pt").write_bytes(b"other weights")
    (root / "docs" / "data_license.txt").unlink()
    card = root / "docs" / "README.md"
    card.write_text(card.read_text().replace("## MONAI Bundle Commands", "## Commands"))
    assert zoo.file_problems(bundle) == [
        "docs/data_license.txt: missing",
        "large_files.yml: does not describe the weights as they are (run `sum-monai bundle large-files`)",
    ]
    assert zoo.card_problems(bundle) == ["docs/README.md: no 'MONAI Bundle Commands' section (zoo readme template)"]
    zoo.write_large_files(bundle)
    assert "large_files.yml" not in " ".join(zoo.file_problems(bundle))


def test_bundle_scripts_pass_the_zoo_code_style() -> None:
    """The zoo's style for bundle code: black at 120 columns; flake8-bugbear's B903 once fired on
    ``mammo.py`` (a class holding one attribute without ``__slots__``)."""
    import subprocess
    import sys

    scripts = [str(REPO_BUNDLES / name / "scripts") for name in BUNDLE_NAMES]
    black = subprocess.run([sys.executable, "-m", "black", "--check", "-l", "120", *scripts], capture_output=True, text=True)
    assert black.returncode == 0, black.stderr
    flake8 = subprocess.run([sys.executable, "-m", "flake8", "--max-line-length", "120", "--select", "B903,E9,F", *scripts],
                            capture_output=True, text=True)  # fmt: skip
    assert flake8.returncode == 0, flake8.stdout + flake8.stderr
