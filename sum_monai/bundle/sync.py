"""Keep the scripts every bundle carries identical to their canonical copies.

Bundles run without sum_monai, so each has its own copy of the shared scripts
(``sum_monai/bundle/bundle_scripts/*.py``). ``sum-monai bundle sync-scripts`` writes them and
:func:`stale_scripts` (run by the tests) reports any copy that drifted.
"""

from __future__ import annotations

from pathlib import Path

from sum_monai.utils.atomic import atomic_write_bytes

CANONICAL = Path(__file__).resolve().parent / "bundle_scripts"
SHARED = ("checkpoint.py", "checks.py", "ensemble.py", "lesions.py", "metrics.py", "pil.py", "precision.py", "tracking.py", "tta.py")


def bundles_in(root: Path) -> list[Path]:
    """Bundle folders (with ``configs/metadata.json``) directly under ``root``."""
    return sorted(p for p in root.iterdir() if (p / "configs" / "metadata.json").is_file())


def stale_scripts(bundle_root: Path) -> list[Path]:
    """Shared scripts of one bundle that are missing or differ from the canonical copy."""
    return [
        bundle_root / "scripts" / name
        for name in SHARED
        if not (bundle_root / "scripts" / name).is_file()
        or (bundle_root / "scripts" / name).read_bytes() != (CANONICAL / name).read_bytes()
    ]


def sync_scripts(bundle_root: Path) -> list[Path]:
    """Write the canonical shared scripts into ``bundle_root/scripts``; return the files changed."""
    changed = stale_scripts(bundle_root)
    for path in changed:
        atomic_write_bytes(path, (CANONICAL / path.name).read_bytes())
    init = bundle_root / "scripts" / "__init__.py"
    if not init.exists():
        atomic_write_bytes(init, b'"""Code this bundle\'s configs use beyond MONAI, referenced as ``scripts.<module>.<name>``."""\n')
        changed.append(init)
    return changed
