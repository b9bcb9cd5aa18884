"""A run is a bundle: the recipe is written into ``RUN/bundle/<name>/``, run settings never are."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sum_monai.bundle.locate import Bundle
from sum_monai.bundle.recipe import write_recipe_bundle
from sum_monai.errors import ConfigError

US = Bundle.find("breast_us_seg_2d")


@pytest.fixture(scope="module")
def us_phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sum_monai.phantoms import generate

    out = tmp_path_factory.mktemp("recipe") / "us"
    generate("us", 10, out, seed=3, size=(64, 64), progress=False, overview=False)
    return out


def configs(root: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted((root / "configs").glob("*.json"))}


def test_recipe_ids_go_to_every_file_that_defines_them(tmp_path: Path) -> None:
    recipe = {"image_size": 128, "loss#batch": True, "network_def#channels": [8, 16, 32, 64, 128],
              "validate#dataloader#batch_size": 2, "_meta_#name": "renamed"}  # fmt: skip
    written = configs(write_recipe_bundle(US, tmp_path / "b", recipe).root)
    source = configs(US.root)
    assert written["train.json"]["image_size"] == written["inference.json"]["image_size"] == 128
    assert written["train.json"]["loss"]["batch"] is True and "batch" not in written["inference.json"].get("loss", {})
    assert written["inference.json"]["network_def"]["channels"] == [8, 16, 32, 64, 128]
    # an override file keeps its own flat ids (a nested "validate" there would replace train.json's)
    assert written["evaluate.json"]["validate#dataloader#batch_size"] == 2 and "validate" not in written["evaluate.json"]
    meta = written["metadata.json"]
    assert meta["name"] == "renamed"
    # the declared network shape is derived from inference.json's network_input_size
    assert meta["network_data_format"]["inputs"]["image"]["spatial_shape"] == [128, 128]
    assert meta["network_data_format"]["outputs"]["pred"]["spatial_shape"] == [128, 128]
    # nothing else changed
    for name, content in source.items():
        others = {k: v for k, v in content.items() if k not in ("image_size", "loss", "network_def", "validate",
                                                                   "validate#dataloader#batch_size", "name",
                                                                   "network_data_format")}  # fmt: skip
        assert {k: written[name][k] for k in others} == others, name


def test_an_id_no_config_defines_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no config file defines 'epoch' \(looked in evaluate\.json, inference\.json"):
        write_recipe_bundle(US, tmp_path / "b", {"epoch": 3})
    assert not (tmp_path / "b").exists()


def test_run_settings_given_as_recipe_are_refused_with_their_option(tmp_path: Path) -> None:
    from sum_monai.workflows.train import train

    with pytest.raises(ConfigError, match=r"cache_rate \(--cache-rate\), device \(--device\), precision \(--precision\)"):
        train(US, data=tmp_path, output=tmp_path / "run", overrides={"cache_rate": 0.5, "device": "cpu", "precision": "bf16"})
    assert not (tmp_path / "run").exists()


def test_run_settings_change_nothing_in_the_trained_bundle(
    tmp_path: Path, us_phantoms: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Device, precision, workers, cache, warm start and folders reach the workflow, never the run's bundle."""
    import sum_monai.workflows.train as train_module
    from sum_monai.bundle.run import create_workflow

    seen: dict = {}

    def stop(wf: object, bundle: Bundle) -> None:  # the workflow as it would train, then an interrupt
        parser = wf.parser  # type: ignore[attr-defined]
        seen.update({k: parser.get_parsed_content(k) for k in ("num_workers", "cache_rate", "initial_weights", "precision")})
        seen["device"] = str(parser.get_parsed_content("device"))
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "run_created", stop)
    weights = tmp_path / "init.pt"
    torch.save(create_workflow(US, "inference").parser.get_parsed_content("network_def").state_dict(), weights)
    with pytest.raises(KeyboardInterrupt):
        train_module.train(
            US, data=us_phantoms, output=tmp_path / "run", epochs=2, overrides={"image_size": 32, "val_interval": 1},
            device="cpu", num_workers=1, cache_rate=0.5, initial_weights=weights, tracking_uri=f"sqlite:///{tmp_path / 'm.db'}",
            precision="bf16",
        )  # fmt: skip
    assert seen == {
        "num_workers": 1, "cache_rate": 0.5, "initial_weights": str(weights.resolve()), "device": "cpu", "precision": "bf16",
    }  # fmt: skip
    run_bundle = tmp_path / "run" / "bundle" / US.name
    written, source = configs(run_bundle), configs(US.root)
    recipe = {"image_size": 32, "val_interval": 1, "epochs": 2}
    for name, content in source.items():
        expected = {k: recipe.get(k, v) if k in recipe else v for k, v in content.items()}
        if name == "metadata.json":
            for io in ("inputs#image", "outputs#pred"):
                group, key = io.split("#")
                expected["network_data_format"][group][key]["spatial_shape"] = [32, 32]
        assert written[name] == expected, name
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    options = record["options"]
    assert (options["device"], options["num_workers"], options["cache_rate"], options["precision"]) == ("cpu", 1, 0.5, "bf16")
    assert "overrides" not in record
    # a run.json of 0.x kept its options as top-level fields: they load into the one options object
    flat = {k: v for k, v in record.items() if k != "options"} | {"device": "cpu", "cache_rate": 0.5}
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "run.json").write_text(json.dumps(flat))
    from sum_monai.workflows.rundir import RunRecord

    old = RunRecord.load(tmp_path / "old")
    assert (old.options.device, old.options.cache_rate, old.options.precision) == ("cpu", 0.5, None)
    assert old.settings(tmp_path / "old").overrides()["cache_rate"] == 0.5


def test_bundle_scripts_import_only_inside_their_scope() -> None:
    """Parsing a bundle config leaves no ``scripts`` module or bundle root behind; a parse inside a
    running workflow's scope keeps the modules that run imported (no second copy of a class)."""
    import sys

    from sum_monai.bundle.run import bundle_imports, create_workflow

    before = (list(sys.path), sorted(m for m in sys.modules if m.split(".")[0] == "scripts"))
    wf = create_workflow(US, "evaluate")
    inferer = wf.parser.get_parsed_content("validate#inferer")
    assert type(inferer).__module__ == "scripts.ensemble"
    assert (list(sys.path), sorted(m for m in sys.modules if m.split(".")[0] == "scripts")) == before
    with bundle_imports(US.root):
        import scripts.ensemble as outer

        again = wf.parser.get_parsed_content("validate#inferer", lazy=False)  # parsed again, in a nested scope
        assert sys.modules["scripts.ensemble"] is outer and type(again) is outer.EnsembleInferer
    assert str(US.root) not in sys.path
