"""Deploying the bundles in ``bundles/``: serving them to annotators through MONAI Label.

:mod:`sum_monai.deploy.monailabel` creates MONAI Label's own virtual environment, checks that a
bundle has what MONAI Label needs, prepares a ``monaibundle`` app folder and runs the server.
"""
