"""Canonical copies of the scripts every bundle carries (synced into ``bundles/*/scripts/``).

Bundles must run without sum_monai installed, so each keeps its own copy of these files; the copies
are written by ``sum-monai bundle sync-scripts`` and a test fails when one drifts from here.
"""
