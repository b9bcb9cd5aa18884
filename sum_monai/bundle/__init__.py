"""Working with the MONAI Bundles in ``bundles/``: locate, run with overrides, verify, export."""
