"""Shared fixtures: paths to the real data in ../shared/data (skipped with a reason when absent)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SUM_MONAI_SHARED_DATA", REPO.parent / "shared" / "data"))
BUNDLES = REPO / "bundles"

# keep the test suite to one thread per process: the CI machine has 2 cores
os.environ.setdefault("OMP_NUM_THREADS", "1")
# case ids of the tests are keyed by a salt file of this test session, never the user's own
_SALT_DIR = tempfile.mkdtemp(prefix="sum_monai-test-salt-")
atexit.register(shutil.rmtree, _SALT_DIR, True)
os.environ["SUM_MONAI_ID_SALT_FILE"] = os.path.join(_SALT_DIR, "id_salt")
# exports are cached per test session, never in the user's ~/.cache
os.environ["SUM_MONAI_CACHE"] = os.path.join(_SALT_DIR, "cache")


def shared_path(*parts: str) -> Path:
    """Return ``../shared/data/<parts>`` or skip the test, saying what is missing."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (it lives in ../shared/data on dev/CI machines)")
    return path


@pytest.fixture(scope="session")
def busi_fixtures() -> Path:
    """Six BUSI cases with their original bytes (RGB images, RGBA mask, multi-lesion masks)."""
    return shared_path("busi_fixtures")


@pytest.fixture(scope="session")
def busi_pool() -> Path:
    """The 575-case BUSI development pool."""
    return shared_path("busi")


@pytest.fixture(scope="session")
def ddsm_tissue() -> Path:
    """60 DDSM film mammograms with 4-class tissue labels."""
    return shared_path("ddsm_tissue")


@pytest.fixture(scope="session")
def breast_mri() -> Path:
    """The PyRadiomics breast1 MRI sub-volume (NRRD image + label)."""
    return shared_path("breast_mri_pyradiomics")


@pytest.fixture(scope="session")
def mias() -> Path:
    """The 240 mini-MIAS films (original PGM) and their Info.txt."""
    return shared_path("mias")


@pytest.fixture()
def mias_subset(mias: Path, tmp_path: Path) -> Path:
    """Six real mini-MIAS films of three women (normal, benign, malignant with several rows) and
    their own Info.txt rows, linked into a small folder."""
    refs = ("mdb001", "mdb002", "mdb023", "mdb024", "mdb143", "mdb144")
    folder = tmp_path / "mias"
    folder.mkdir()
    for ref in refs:
        (folder / f"{ref}.pgm").symlink_to(mias / f"{ref}.pgm")
    lines = [line for line in (mias / "Info.txt").read_text(encoding="latin-1").splitlines() if line[:6] in refs]
    (folder / "Info.txt").write_text("header prose\n\n" + "\n".join(lines) + "\n")
    return folder
