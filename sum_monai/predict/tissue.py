"""The breast region of a mammogram: the "normal tissue" segment of a mammography DICOM SEG.

The mammography bundle predicts benign and malignant lesions; everything else is label 0
(background *and* normal tissue). A DICOM SEG should not call the air around the breast
"normal tissue", so the normal-tissue segment is the breast region minus the predicted lesions,
where the breast region is found by a simple documented rule on the *presented* image:

1. the presented image: pydicom's modality LUT then VOI LUT (window), MONOCHROME1 inverted, so
   tissue is bright and air dark, whatever the file's photometric interpretation;
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
    """``(rows, cols)`` float image as displayed: modality LUT, VOI LUT, MONOCHROME1 inverted."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    arr = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds).astype(np.float32)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        arr = arr.max() + arr.min() - arr
    return arr


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
