"""sum_monai: breast-cancer segmentation tooling around MONAI Bundles.

The package is the tooling around the bundles in ``bundles/``: phantoms (built-in synthetic data),
data layouts and datalists, running / evaluating / exporting bundles, MLflow tracking, reports and
the ``sum-monai`` command line. The training recipe itself lives in the bundle configs.
"""

__version__ = "0.1.0"
