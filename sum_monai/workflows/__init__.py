"""What the CLI commands do, end to end: data -> bundle workflow -> tracking -> reports.

Each module drives bundle configs through :mod:`sum_monai.bundle.run`; none holds a training loop.
"""
