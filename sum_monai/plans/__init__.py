"""Dataset fingerprints and the preprocessing plan derived from them (the nnU-Net idea).

Instead of hard-coding input size or voxel spacing, :func:`fingerprint` measures a datalist
(shapes, spacings, intensities, lesion share) and :func:`plan_overrides` turns that into bundle
config overrides (``image_size`` for 2D, ``pixdim`` / ``roi_size`` for 3D) written as an override
file for ``sum-monai train --config``.
"""

from sum_monai.plans.fingerprint import Fingerprint, fingerprint
from sum_monai.plans.plan import plan_overrides

__all__ = ["Fingerprint", "fingerprint", "plan_overrides"]
