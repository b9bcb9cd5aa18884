"""Near-duplicate images: perceptual hashes of normalised thumbnails, grouped by Hamming distance.

Public 2D sets hold the same scan more than once (re-exported, re-cropped, with and without
caliper marks) and neighbouring frames of one lesion. If such images land in training and test,
test scores are inflated. The images are grouped so a split never separates them:

1. **thumbnail**: grey (mean of colour channels), dark borders cropped, resampled to 64x64
   (bilinear, no anti-aliasing blur: blurring made unrelated ultrasound images look alike and
   narrowed the gap below), histogram-equalised (so brightness/gain changes do not matter);
2. **pHash**: the 16x16 lowest-frequency DCT coefficients of the thumbnail compared with their
   median, a 256-bit hash;
3. **groups**: all pairs within ``threshold`` bits (``scipy.spatial.distance.pdist``) are edges of
   a graph whose connected components (``scipy.sparse.csgraph``, i.e. union-find) are the groups.

The default threshold, 84 of 256 bits, was measured on the 575-image BUSI pool
(``../shared/data/busi``). The distance of each image to its nearest neighbour is bimodal:
8-78 bits (near-identical copies, re-annotated copies, neighbouring frames of one lesion) and
88-106 bits (unrelated images), with no image whose nearest neighbour lies in 80-86. The group
count is on a plateau from 70 to 88 bits (107 groups). Looking at every pair from 64 to 90 bits:
all pairs up to 84 are the same lesion (e.g. ``malignant (85)``/``(86)`` at 76,
``benign (333)``/``malignant (78)`` at 78), at 86 two frame groups of one lesion join
(``benign (399)``/``malignant (94)``), and from 88 unrelated pairs appear (``benign (12)``/
``benign (51)``); from 96 groups chain into clusters of 16. At 84 the pool gives **107 groups
holding 240 images** (42% of the pool; the largest group has 6 images); 5 groups mix classes
(one image filed under two classes). The synthetic ultrasound phantom with
``near_duplicate_rate=0.2`` (40 images, seed 1) has its planted near-duplicates within 72 bits
of their group and unrelated images at 98 bits or more: all 11 are found, with no false merge.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: Side of the square thumbnail hashed.
THUMB_SIZE = 64
#: Side of the block of low-frequency DCT coefficients kept (hash bits = HASH_SIZE**2).
HASH_SIZE = 16
#: Default Hamming threshold in bits (of 256), measured on the BUSI pool (see module docstring).
DEFAULT_THRESHOLD = 84


def thumbnail(array: np.ndarray) -> np.ndarray:
    """Normalised ``THUMB_SIZE`` square thumbnail of a 2D image.

    Args:
        array: ``(C, W, H)`` channel-first (as :func:`sum_monai.io.read.read_image` gives) or
            ``(W, H)``; colour channels are averaged, an alpha channel (4th) is dropped.

    Returns:
        float64 array in [0, 1], histogram-equalised.

    Raises:
        ValueError: the image is not 2D.
    """
    from skimage.exposure import equalize_hist
    from skimage.transform import resize

    a = np.asarray(array, dtype=np.float64)
    if a.ndim == 3:
        a = a[:3].mean(axis=0)
    if a.ndim != 2:
        raise ValueError(f"near-duplicate detection needs 2D images, got shape {array.shape}")
    bright = a > (a.min() + 0.08 * (a.max() - a.min()))
    rows, cols = np.flatnonzero(bright.any(axis=1)), np.flatnonzero(bright.any(axis=0))
    if rows.size and cols.size:
        a = a[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    small = resize(a, (THUMB_SIZE, THUMB_SIZE), order=1, anti_aliasing=False, preserve_range=True)
    if np.ptp(small) == 0:
        return np.zeros_like(small)
    return np.asarray(equalize_hist(small), dtype=np.float64)


def perceptual_hash(array: np.ndarray) -> np.ndarray:
    """256-bit DCT perceptual hash (pHash) of a 2D image.

    Written here because neither MONAI, scikit-image nor scipy has one and the ``imagehash``
    package would add a dependency (PyWavelets) for these few lines.

    Returns:
        boolean vector of ``HASH_SIZE**2`` bits.
    """
    from scipy.fft import dctn

    coeffs = dctn(thumbnail(array), norm="ortho")[:HASH_SIZE, :HASH_SIZE].ravel()
    return coeffs > np.median(coeffs)


#: Hashes already computed in this process, keyed by (path, size, mtime): rebuilding a datalist
#: with another seed or fraction does not read every image again.
_CACHE: dict[tuple[str, int, int], np.ndarray] = {}


def hash_files(paths: Sequence[str | Path], progress: bool = True) -> np.ndarray:
    """Perceptual hashes of image files, one row per file.

    Files are read with :func:`sum_monai.io.read.read_image`, so any 2D format works (PNG, DICOM).
    Results are cached in memory for the life of the process (keyed by path, size and mtime).

    Raises:
        DataError: a file cannot be read or is not 2D.
    """
    from tqdm import tqdm

    from sum_monai.errors import DataError
    from sum_monai.io.read import read_image

    rows = []
    for path in tqdm(paths, desc="near-duplicate hashes", unit="image", disable=not progress):
        if not Path(path).is_file():
            raise DataError(path, "file not found")
        stat = Path(path).stat()
        key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in _CACHE:
            array = read_image(path, check_finite=False).numpy()
            if array.ndim != 3:
                raise DataError(
                    path, f"near-duplicate detection works on 2D images; this one has shape {array.shape[1:]}"
                )
            _CACHE[key] = perceptual_hash(array)
        rows.append(_CACHE[key])
    return np.array(rows, dtype=bool).reshape(len(rows), HASH_SIZE * HASH_SIZE)


def hamming_matrix(hashes: np.ndarray) -> np.ndarray:
    """Square matrix of pairwise Hamming distances in bits."""
    from scipy.spatial.distance import pdist, squareform

    if len(hashes) < 2:
        return np.zeros((len(hashes), len(hashes)), dtype=np.int64)
    return np.rint(squareform(pdist(hashes, "hamming")) * hashes.shape[1]).astype(np.int64)


def near_duplicate_groups(hashes: np.ndarray, threshold: int = DEFAULT_THRESHOLD) -> list[list[int]]:
    """Groups (as sorted index lists, size >= 2) of images linked by pairs within ``threshold`` bits.

    Linking is transitive (connected components of the pair graph), as union-find would do.

    Example:
        >>> h = np.array([[0] * 256, [0] * 255 + [1], [1] * 256], dtype=bool)
        >>> near_duplicate_groups(h, threshold=4)
        [[0, 1]]
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(hashes)
    if n < 2:
        return []
    close = hamming_matrix(hashes) <= threshold
    _, labels = connected_components(csr_matrix(close), directed=False)
    groups: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        groups.setdefault(int(label), []).append(index)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])
