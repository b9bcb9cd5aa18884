"""Prediction with a bundle's ``inference.json``: outputs aligned with the input, DICOM SEG, JSON/CSV.

- :mod:`~sum_monai.predict.cases`: which files and folders are cases (2D images, 3D volumes,
  multi-channel MRI as 4D files, nnU-Net ``_0000``/``_0001`` files or ``pre``/``post1`` series);
- :mod:`~sum_monai.predict.backends`: the network as eager PyTorch, TorchScript or ONNX Runtime;
- :mod:`~sum_monai.predict.runner`: the bundle's preprocessing -> inferer -> postprocessing, one
  case at a time (as MONAI Label runs a bundle), a bad case reported and skipped;
- :mod:`~sum_monai.predict.summary`: lesions by connected components, area / volume, class,
  probabilities; the per-folder CSV;
- :mod:`~sum_monai.predict.outputs`: mask, DICOM SEG (:mod:`sum_monai.io.seg`) and JSON of a case;
- :mod:`~sum_monai.predict.tissue`: the breast region of a mammogram (the "normal tissue" segment).

Import the submodules directly; this file stays free of heavy imports.
"""
