"""Check and maintain the bundles: offline verification and the shared scripts they carry."""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """\
verify parses and runs the bundle's configs (their `_target_` and `$` expressions execute code):
only verify bundles you trust (docs/trust.md).

examples:
  sum-monai bundle verify                       # every bundle in bundles/
  sum-monai bundle verify --bundle bundles/breast_us_seg_2d
  sum-monai bundle sync-scripts                 # after editing sum_monai/bundle/bundle_scripts/
  sum-monai bundle large-files                  # after changing weights: large_files.yml with their md5
"""


#: Printed before every verify: "ok" says the bundle is well-formed, not that it is safe.
TRUST_NOTE = (
    "note: verify runs the bundle's code: it parses and instantiates its configs, so every `_target_` and `$` "
    "expression (and the scripts/ they import) executes with your permissions. An 'ok' means the bundle is "
    "well-formed, not that it is safe: only verify bundles you trust (docs/trust.md)."
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bundle", help="verify bundles offline (MONAI's checks and the model zoo's rules); sync their shared scripts",
        description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("action", choices=["verify", "sync-scripts", "large-files"], help="what to do")
    p.add_argument("--bundle", action="append", help="bundle folder or name (repeatable; default: all in bundles/)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sum_monai.bundle.locate import REPO_BUNDLES, Bundle
    from sum_monai.bundle.sync import bundles_in, sync_scripts

    bundles = [Bundle.find(b) for b in args.bundle] if args.bundle else [Bundle(p) for p in bundles_in(REPO_BUNDLES)]
    if args.action == "sync-scripts":
        for b in bundles:
            changed = sync_scripts(b.root)
            print(f"{b.name}: " + (", ".join(str(Path(c).name) for c in changed) if changed else "up to date"))
        return 0
    if args.action == "large-files":
        from sum_monai.bundle.zoo import write_large_files

        for b in bundles:
            print(f"{b.name}: wrote {write_large_files(b)}")
        return 0
    from sum_monai.bundle.verify import verify_bundle

    print(TRUST_NOTE, flush=True)
    status = 0
    for b in bundles:
        report = verify_bundle(b)
        for check in report.checks:
            print(f"{b.name}: ok      {check}")
        for problem in report.problems:
            print(f"{b.name}: FAILED  {problem}")
        status |= 0 if report.ok else 1
    return status
