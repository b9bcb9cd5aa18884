"""Datalists: scan a dataset folder, group and split it without leakage, validate, write JSON.

- :mod:`.busi`, :mod:`.mammo`, :mod:`.paired`, :mod:`.msd`: layout scanners;
- :mod:`.near_dups`: perceptual-hash near-duplicate groups;
- :mod:`.split`: seeded, group-aware, stratified split (scikit-learn ``StratifiedGroupKFold``);
- :mod:`.ids`: anonymised ``case_id`` / ``group`` (keyed hashes);
- :mod:`.validate`: checks before training;
- :mod:`.build`: all of it end to end (``sum-monai datalist``).

Import the submodules directly, e.g. ``from sum_monai.datalists.build import build_datalist``.
"""
