"""MLflow tracking: where runs are stored, what is logged, and the model registry.

Training and evaluation runs are logged by MONAI's own ``MLFlowHandler`` (patched into the bundle
workflow through MONAI's tracking settings); this package adds what happens around a run: the
store location, config parameters, plots, the bundle archive and the registered model.
"""
