"""Scores computed by the package on predictions: segmentation, lesion detection (FROC), film class, post-processing levers."""
