"""Code this bundle's configs use beyond MONAI, referenced as ``scripts.<module>.<name>``."""
