"""Offline checks of a bundle, all done by MONAI's own bundle tools.

- ``verify_metadata`` against the metadata schema shipped in this package (no download);
- ``verify_net_in_out``: the network maps the declared input shape to the declared output;
- ``ConfigWorkflow.check_properties()`` for the train and inference workflows (MONAI's list of
  required config ids such as ``network_def``, ``preprocessing``, ``trainer``, ...);
- ``ckpt_export`` of ``models/model.pt`` and loading the shipped ``models/model.ts``, as the
  zoo's ``verify_torchscript`` does, and that ``model.ts`` embeds this version of the metadata;
- the zoo's file, model-card and package rules (:mod:`sum_monai.bundle.zoo`).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sum_monai.bundle import zoo
from sum_monai.bundle.locate import Bundle
from sum_monai.bundle.run import bundle_imports, create_workflow

logger = logging.getLogger(__name__)

SCHEMA = Path(__file__).resolve().parent / "schema" / "meta_schema_20240725.json"


@dataclass
class VerifyReport:
    """Outcome of :func:`verify_bundle`; ``problems`` is empty when every check passed."""

    bundle: str
    checks: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_bundle(bundle: Bundle) -> VerifyReport:
    """Run the offline checks on ``bundle``; problems are collected, not raised."""
    from monai.bundle import verify_metadata, verify_net_in_out

    report = VerifyReport(bundle.name)
    tmp = Path(tempfile.mkdtemp(prefix="sum_monai_verify_"))
    meta = str(bundle.config("metadata.json"))

    def attempt(name: str, fn: Callable[[], object]) -> None:
        try:
            fn()
            report.checks.append(name)
        except Exception as err:  # every failure becomes a line of the report
            report.problems.append(f"{name}: {type(err).__name__}: {err}")

    attempt("metadata schema", lambda: verify_metadata(meta_file=meta, filepath=str(SCHEMA)))
    for config in ("inference.json", "train.json"):
        attempt(
            f"network input/output ({config})",
            lambda config=config: verify_net_in_out(
                net_id="network_def", meta_file=meta, config_file=str(bundle.config(config)), bundle_root=str(bundle.root)
            ),
        )
    for workflow in ("train", "inference"):

        def props(workflow: str = workflow) -> None:
            wf = create_workflow(bundle, workflow, _placeholder_data(tmp) if workflow == "train" else None)
            wf.initialize()
            missing = wf.check_properties()
            if missing:
                raise ValueError(f"missing required properties {missing}")

        attempt(f"workflow properties ({workflow})", props)
    attempt("ckpt_export and models/model.ts load", lambda: _torchscript(bundle, tmp))
    for name, rule in (("zoo files", zoo.file_problems), ("model card sections", zoo.card_problems),
                       ("required packages", zoo.package_problems), ("TorchScript metadata", zoo.torchscript_problems)):  # fmt: skip
        attempt(name, lambda rule=rule: _none(rule(bundle)))
    shutil.rmtree(tmp, ignore_errors=True)
    return report


def _none(problems: list[str]) -> None:
    if problems:
        raise ValueError("; ".join(problems))


def _torchscript(bundle: Bundle, tmp: Path) -> None:
    """What the zoo's ``verify_torchscript`` does: export ``model.pt`` with MONAI, load ``model.ts``."""
    import torch
    from monai.bundle import ckpt_export

    with bundle_imports(bundle.root):
        ckpt_export(
            net_id="network_def", filepath=str(tmp / "verify_model.ts"), ckpt_file=str(bundle.root / "models" / "model.pt"),
            meta_file=str(bundle.config("metadata.json")), config_file=str(bundle.config("inference.json")),
            bundle_root=str(bundle.root),
        )  # fmt: skip
    torch.jit.load(str(bundle.root / "models" / "model.ts"), map_location="cpu")


def _placeholder_data(tmp: Path) -> dict[str, object]:
    """Overrides giving the train workflow a datalist whose files are never read (no caching).

    The train workflow builds its datasets and loaders while its properties are checked; a
    datalist of placeholder entries lets that happen without any data on the machine.
    """
    entry = {"image": "placeholder.png", "label": "placeholder.png", "case_id": "placeholder"}
    path = tmp / "datalist.json"
    path.write_text(json.dumps({"training": [entry, entry], "validation": [entry]}))
    return {"data_list_file_path": str(path), "cache_rate": 0.0}
