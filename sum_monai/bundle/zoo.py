"""The MONAI model zoo's rules for a bundle folder, checked offline (what its CI would refuse).

The zoo's ``ci/verify_bundle.py`` downloads ``large_files.yml``, checks ``metadata.json`` against
the schema, runs ``verify_net_in_out`` and ``ckpt_export`` and loads ``models/model.ts``; its
dependency step installs ``required_packages_version`` on the Python it runs; its pre-commit
wants newline-terminated JSON; its reviewers want the readme template's sections. The checks here
are the file and card rules; :func:`sum_monai.bundle.verify.verify_bundle` runs them beside
MONAI's own checks. ``large_files.yml`` is written by :func:`write_large_files`
(``sum-monai bundle large-files``): the weights stay committed while under the zoo's size limit, as
the zoo's small bundles keep theirs, and the file gives each one's hash, so MONAI's
``download_url`` finds them present and skips the download.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import sys
from pathlib import Path

from sum_monai.bundle.locate import Bundle

#: Files a zoo bundle must hold.
REQUIRED_FILES = (
    "configs/metadata.json", "configs/inference.json", "models/model.pt", "models/model.ts", "docs/README.md",
    "docs/data_license.txt", "LICENSE", "large_files.yml",
)  # fmt: skip
#: Sections of the zoo's ``docs/readme_template.md`` a model card must have (plus the commands).
CARD_SECTIONS = (
    "Authors", "Tags", "Model Description", "Data", "Performance", "MONAI Bundle Commands", "System Configuration",
    "References",
)  # fmt: skip
#: The zoo's limit for a file committed in a bundle (bigger ones are downloaded through large_files.yml).
MAX_FILE_MB = 25
#: Where the committed weights are published (the repository itself).
WEIGHTS_URL = "https://github.com/sum-monai/sum_monai/raw/main/bundles/{bundle}/{path}"
#: Import names provided by the packages every bundle environment has (MONAI's own dependencies).
BASE_PACKAGES = {"monai", "torch", "numpy", "ignite"}
#: Distribution names of import names that differ.
DISTRIBUTION = {"PIL": "pillow", "ignite": "pytorch-ignite", "skimage": "scikit-image", "yaml": "pyyaml"}
#: Packages a bundle needs without importing them itself (MONAI imports them for a component it uses).
IMPLIED = {
    "HausdorffDistanceMetric": "scipy", "RemoveSmallObjects": "scikit-image", "ITKReader": "itk", "PILReader": "pillow",
    "NibabelReader": "nibabel", "PydicomReader": "pydicom",
}  # fmt: skip
#: Newest release of a package that installs on Python 3.10 (PyPI, 2026-12-01), so on 3.10-3.12.
PY310_NEWEST = {
    "numpy": "2.2.6", "pillow": "12.3.0", "scipy": "1.15.3", "scikit-image": "0.25.2", "pydicom": "3.0.2",
    "nibabel": "5.4.2", "itk": "5.4.7", "pytorch-ignite": "0.5.5", "mlflow": "3.17.2", "torch": "2.13.0",
    "monai": "1.6.1",
}  # fmt: skip


def md5(path: Path) -> str:
    """MD5 of a file (the hash type the zoo's ``large_files.yml`` uses)."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weight_files(bundle: Bundle) -> list[Path]:
    """The bundle's weight files (``models/*.pt``, ``models/*.ts``), sorted."""
    models = bundle.root / "models"
    return sorted(p for p in models.iterdir() if p.suffix in (".pt", ".ts")) if models.is_dir() else []


def large_files_text(bundle: Bundle, name: str | None = None) -> str:
    """The ``large_files.yml`` describing the bundle's weights (path, url, md5).

    Args:
        bundle: the bundle folder.
        name: the bundle's name in the repository's ``bundles/`` (the URL's folder; default the
            folder's own name, which a bundle packaged elsewhere need not have).
    """
    lines = ["large_files:"]
    for path in weight_files(bundle):
        rel = path.relative_to(bundle.root).as_posix()
        lines += [
            f'  - path: "{rel}"',
            f'    url: "{WEIGHTS_URL.format(bundle=name or bundle.name, path=rel)}"',
            f'    hash_val: "{md5(path)}"',
            '    hash_type: "md5"',
        ]
    return "\n".join(lines) + "\n"


def write_large_files(bundle: Bundle, name: str | None = None) -> Path:
    """Write ``large_files.yml`` for the weights the bundle holds now (``name``: as :func:`large_files_text`)."""
    from sum_monai.utils.atomic import atomic_write_text

    return atomic_write_text(bundle.root / "large_files.yml", large_files_text(bundle, name))


def _listed_weights(text: str) -> list[tuple[str, str]]:
    """(path, md5) of each entry of a ``large_files.yml`` written by :func:`large_files_text`."""
    return re.findall(r'path: "([^"]+)"\n\s+url: "[^"]*"\n\s+hash_val: "([0-9a-f]+)"', text)


def file_problems(bundle: Bundle) -> list[str]:
    """Missing zoo files, files over the size limit, and a ``large_files.yml`` that is not current."""
    root = bundle.root
    problems = [f"{rel}: missing" for rel in REQUIRED_FILES if not (root / rel).is_file()]
    for path in root.rglob("*"):
        if path.is_file() and path.stat().st_size > MAX_FILE_MB * 2**20:
            problems.append(f"{path.relative_to(root)}: {path.stat().st_size / 2**20:.1f} MB, over the zoo's {MAX_FILE_MB} MB")
    listing = root / "large_files.yml"
    if listing.is_file() and _listed_weights(listing.read_text()) != _listed_weights(large_files_text(bundle)):
        problems.append("large_files.yml: does not describe the weights as they are (run `sum-monai bundle large-files`)")
    return problems


def card_problems(bundle: Bundle) -> list[str]:
    """Sections of the zoo's readme template missing from ``docs/README.md``."""
    card = bundle.root / "docs" / "README.md"
    if not card.is_file():
        return ["docs/README.md: missing"]
    headings = {re.sub(r"[*#]", "", line).strip().lower() for line in card.read_text().splitlines() if line.startswith("#")}
    return [f"docs/README.md: no '{s}' section (zoo readme template)" for s in CARD_SECTIONS if s.lower() not in headings]


def imported_packages(bundle: Bundle) -> set[str]:
    """Distribution names of third-party packages the bundle's scripts and configs need.

    Scripts: their ``import`` statements (also those inside functions); configs: ``$import``
    expressions and MONAI components that need a package MONAI does not install (``IMPLIED``).
    """
    names: set[str] = set()
    components: set[str] = set()  # names imported from MONAI by the scripts
    for path in (bundle.root / "scripts").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
                components.update(a.name for a in node.names)
    configs = " ".join(p.read_text() for p in (bundle.root / "configs").glob("*.json"))
    names.update(re.findall(r"\$import (\w+)", configs))
    implied = {pkg for c, pkg in IMPLIED.items() if c in components or re.search(rf"\b{c}\b", configs)}
    third_party = {n for n in names if n not in sys.stdlib_module_names and n not in BASE_PACKAGES and n != "scripts"}
    return {DISTRIBUTION.get(n, n) for n in third_party} | implied


def package_problems(bundle: Bundle) -> list[str]:
    """Packages used but not declared, and pins that do not install on Python 3.10."""
    meta = bundle.metadata
    # (MONAI reads optional_packages_version as a deprecated name of required_packages_version)
    required = {**(meta.get("optional_packages_version") or {}), **(meta.get("required_packages_version") or {})}
    problems = [
        f"metadata.json: {pkg} is used (scripts/ or configs/) but not in required_packages_version"
        for pkg in sorted(imported_packages(bundle) - set(required))
    ]
    pins = {**required, "numpy": meta.get("numpy_version"), "torch": meta.get("pytorch_version"),
            "monai": meta.get("monai_version")}  # fmt: skip
    for pkg, version in sorted(pins.items()):
        newest = PY310_NEWEST.get(pkg)
        if newest is None:
            problems.append(f"metadata.json: {pkg}: no record of which of its releases install on Python 3.10")
        elif _version(str(version)) > _version(newest):
            problems.append(f"metadata.json: {pkg}=={version} does not install on Python 3.10 (newest there: {newest})")
    return problems


def torchscript_problems(bundle: Bundle) -> list[str]:
    """``models/model.ts`` must embed this bundle's metadata as it is (``ckpt_export`` puts it there)."""
    import torch

    path = bundle.root / "models" / "model.ts"
    if not path.is_file():
        return []
    extra = {"metadata.json": ""}
    torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    embedded = json.loads(extra["metadata.json"] or "{}")
    if embedded.get("version") != bundle.version:
        return [f"models/model.ts: embeds metadata version {embedded.get('version')}, the bundle is {bundle.version}"]
    changed = sorted(k for k in {*embedded, *bundle.metadata} if embedded.get(k) != bundle.metadata.get(k))
    if changed:
        return [f"models/model.ts: its embedded metadata differs from configs/metadata.json in {changed} (export it again)"]
    return []


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])
