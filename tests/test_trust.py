"""Checkpoint checks (docs/trust.md): tensors only, the right tensors, clear errors, nothing executed."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from sum_monai.bundle.locate import Bundle
from sum_monai.bundle.run import create_workflow
from sum_monai.bundle.weights import load_checked_state_dict
from sum_monai.cli import main
from sum_monai.errors import ConfigError

US = "breast_us_seg_2d"


@pytest.fixture(scope="module")
def us_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_workflow(Bundle.find(US), "inference").parser.get_parsed_content("network_def")


@pytest.fixture(scope="module")
def png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sum_monai.phantoms import generate

    out = tmp_path_factory.mktemp("us") / "us"
    generate("us", 1, out, seed=1, size=(64, 64), progress=False, overview=False)
    return next(p for p in out.rglob("*.png") if "_mask" not in p.name)


class _RunsCode:
    """Unpickling this calls os.mkdir(marker): what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.mkdir, (str(self.marker),))


def test_a_valid_state_dict_loads_bare_or_under_model(us_net: torch.nn.Module, tmp_path: Path) -> None:
    bundle = Bundle.find(US)
    expected = us_net.state_dict()
    torch.save(expected, tmp_path / "bare.pt")
    torch.save({"model": expected, "epoch": 3}, tmp_path / "wrapped.pt")
    for name in ("bare.pt", "wrapped.pt"):
        state = load_checked_state_dict(bundle, tmp_path / name, network=us_net)
        assert state.keys() == expected.keys()
        assert all(torch.equal(state[k], expected[k]) for k in expected)


def test_a_pickled_whole_model_is_refused(us_net: torch.nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(us_net, path)  # the whole nn.Module, pickled
    with pytest.raises(ConfigError) as err:
        load_checked_state_dict(Bundle.find(US), path, network=us_net)
    message = str(err.value)
    assert str(path) in message and "pickled" in message and "refused" in message
    assert 'torch.save(model.state_dict(), "model.pt")' in message


def test_code_in_a_checkpoint_is_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pt"
    torch.save({"model": _RunsCode(marker)}, path)
    with pytest.raises(ConfigError, match="pickled"):
        load_checked_state_dict(Bundle.find(US), path)
    assert not marker.exists()
    # control: the file really is hostile; an unrestricted unpickler runs it
    torch.load(path, weights_only=False)
    assert marker.is_dir()


def test_shape_mismatch_names_the_layers(us_net: torch.nn.Module, tmp_path: Path) -> None:
    bundle = Bundle.find(US)
    small = create_workflow(bundle, "inference", {"network_def#channels": [8, 16, 32, 64, 128]}).parser
    other = small.get_parsed_content("network_def").state_dict()
    path = tmp_path / "small.pt"
    torch.save(other, path)
    with pytest.raises(ConfigError) as err:
        load_checked_state_dict(bundle, path, network=us_net)
    message = str(err.value)
    first = next(k for k, v in us_net.state_dict().items() if v.shape != other[k].shape)
    expected, got = tuple(us_net.state_dict()[first].shape), tuple(other[first].shape)
    assert f"{first}: expected {expected}, got {got}" in message
    assert "layer(s) with other shapes" in message and str(path) in message


def test_weights_of_another_network_list_missing_and_unexpected_keys(
    us_net: torch.nn.Module, tmp_path: Path
) -> None:
    from monai.networks.nets import BasicUNet

    path = tmp_path / "basic_unet.pt"
    torch.save(BasicUNet(spatial_dims=2, in_channels=1, out_channels=3).state_dict(), path)
    with pytest.raises(ConfigError) as err:
        load_checked_state_dict(Bundle.find(US), path, network=us_net)
    message = str(err.value)
    assert "missing key(s): model.0.conv.unit0.conv.weight" in message
    assert "unexpected key(s): conv_0.conv_0.conv.weight" in message


def test_weights_of_the_mammography_bundle_name_each_mis_shaped_tensor(
    us_net: torch.nn.Module, tmp_path: Path
) -> None:
    """Same UNet family, three classes instead of two: the error names the tensors and both shapes."""
    mammo = create_workflow(Bundle.find("mammo_seg_2d"), "inference").parser.get_parsed_content("network_def")
    path = tmp_path / "mammo.pt"
    torch.save(mammo.state_dict(), path)
    with pytest.raises(ConfigError) as err:
        load_checked_state_dict(Bundle.find(US), path, network=us_net)
    message = str(err.value)
    assert message.startswith(f"{path}:")
    assert "expected (2,), got (3,)" in message


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "checkpoint not found"),
        (b"not a torch file at all", "not a readable PyTorch checkpoint"),
        ({"epoch": 3, "lr": 0.1}, "not a state dict"),
        ([torch.zeros(2)], "not a state dict"),
    ],
)
def test_unusable_checkpoints_give_one_clear_error(content: object, problem: str, tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(ConfigError, match=problem) as err:
        load_checked_state_dict(Bundle.find(US), path)
    assert str(err.value).startswith(f"{path}:")


def test_cli_refuses_bad_weights_before_writing_anything(
    us_net: torch.nn.Module, png: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    pickled = tmp_path / "pickled.pt"
    torch.save(us_net, pickled)
    out = tmp_path / "pred"
    status = main(
        ["predict", "--bundle", US, "--weights", str(pickled), "--input", str(png), "--output", str(out)]
    )
    assert status == 2
    assert "pickled" in capsys.readouterr().err
    assert not [p for p in out.rglob("*") if p.is_file()]  # no mask, JSON, CSV or scratch left

    status = main(
        [
            "export",
            "--bundle",
            US,
            "--weights",
            str(pickled),
            "--format",
            "onnx",
            "--out",
            str(tmp_path / "m.onnx"),
        ]
    )
    assert status == 2 and not (tmp_path / "m.onnx").exists()
    assert "pickled" in capsys.readouterr().err

    # the bundle's own models/model.pt is used by default and must exist
    empty = tmp_path / "bundle"
    for part in ("configs", "scripts"):
        (empty / part).mkdir(parents=True)
        for f in (Bundle.find(US).root / part).glob("*.*"):
            (empty / part / f.name).write_bytes(f.read_bytes())
    status = main(["predict", "--bundle", str(empty), "--input", str(png), "--output", str(out)])
    assert status == 2
    assert f"{empty.resolve() / 'models' / 'model.pt'}: checkpoint not found" in capsys.readouterr().err


def test_pickled_models_are_refused_whatever_the_suffix_or_protocol(
    us_net: torch.nn.Module, tmp_path: Path
) -> None:
    """Saved as .pth / .bin / .ckpt with pickle protocol 5: refused (the check reads content, not names)."""
    for suffix in (".pth", ".bin", ".ckpt"):
        path = tmp_path / f"model{suffix}"
        with path.open("wb") as f:
            torch.save(us_net, f, pickle_protocol=pickle.HIGHEST_PROTOCOL)
        with pytest.raises(ConfigError, match="refused"):
            load_checked_state_dict(Bundle.find(US), path, network=us_net)
