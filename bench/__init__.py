"""Benchmarks of sum_monai: CPU inference backends (2D, 3D sliding window) and training throughput.

Run one with ``python -m bench infer2d|infer3d|train|all [--quick] [--write]``; each prints a
markdown table headed by the machine it ran on and, with ``--write``, replaces its section of
``docs/benchmarks.md``. Speed figures come only from here, never from the test suite.
"""
