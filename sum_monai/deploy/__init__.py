"""Deploying the bundles in ``bundles/``: serving them to annotators through MONAI Label.

:mod:`sum_monai.deploy.monailabel` creates MONAI Label's own virtual environment (``env``), checks
that a bundle has what MONAI Label needs (``checks``), prepares a ``monaibundle`` app folder
(``app``) and runs the server (``server``).
"""
