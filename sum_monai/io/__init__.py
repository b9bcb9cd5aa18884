"""Files the package reads and writes (images, masks, DICOM, NIfTI), behind small interfaces.

Import the submodules directly (``sum_monai.io.writers``, ``sum_monai.io.read``); this file stays
empty so that modules can be added without touching it.
"""
