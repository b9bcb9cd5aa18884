"""The breast region of a mammogram: the "normal tissue" segment of a mammography DICOM SEG.

The mammography bundle predicts benign and malignant lesions; everything else is label 0
(background *and* normal tissue). A DICOM SEG should not call the air around the breast
"normal tissue", so the normal-tissue segment is the breast region minus the predicted lesions,
where the breast region is found by a simple documented rule on the *presented* image:

1. the presented image, exactly as the mammography bundle's reader sees it
   (``scripts/mammo.presentation_array``: modality LUT, VOI LUT or window, MONOCHROME1 inverted
   within the presentation range), so tissue is bright and air dark whatever the file's
   photometric interpretation, and the package has one reading of a mammogram, the bundle's;
2. the triangle threshold of its histogram (scikit-image ``threshold_triangle``), made for
   histograms with one dominant peak (here: the air background) and a long tail (tissue);
   Otsu's threshold splits fatty from dense tissue instead and loses the fatty periphery;
3. the largest connected component above the threshold (drops labels and markers), holes filled.

On the built-in phantoms this is the whole breast outline; on CBIS-DDSM mammograms about the
breast and the pectoral muscle. It is a display aid for the SEG, not a tissue classifier.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = ["breast_region", "presented_image"]


def presented_image(ds: Dataset) -> np.ndarray:
    """``(rows, cols)`` float image as the mammography bundle presents it (see the module docstring)."""
    from sum_monai.bundle.locate import REPO_BUNDLES
    from sum_monai.bundle.scripts import import_bundle_scripts

    mammo = import_bundle_scripts(REPO_BUNDLES / "mammo_seg_2d", "mammo")
    return np.asarray(mammo.presentation_array(ds), dtype=np.float32)


def breast_region(image: np.ndarray) -> np.ndarray:
    """Boolean mask of the breast in a presented mammogram (see the module docstring).

    Args:
        image: 2D presented image (tissue bright).

    Returns:
        Mask of the same shape; all False for a flat image.

    Example:
        >>> img = np.zeros((40, 30)); img[5:35, :12] = 100.0; img[1, 28] = 100.0  # breast + a marker
        >>> m = breast_region(img)
        >>> int(m.sum()), bool(m[1, 28])
        (360, False)
    """
    from scipy import ndimage
    from skimage.filters import threshold_triangle

    arr = np.asarray(image, dtype=np.float64)
    if arr.max() <= arr.min():
        return np.zeros(arr.shape, dtype=bool)
    above = arr > threshold_triangle(arr)
    components, n = ndimage.label(above)
    if n == 0:
        return above
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    return ndimage.binary_fill_holes(components == int(np.argmax(sizes)))
