"""Arguments and printing shared by several subcommands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sum_monai.errors import ConfigError


def add_bundle_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bundle", required=True,
        help="bundle folder (e.g. bundles/breast_us_seg_2d) or the name of a bundle in bundles/",
    )  # fmt: skip


def add_runtime_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default="auto",
        help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N (precision: --precision)",
    )  # fmt: skip
    parser.add_argument(
        "--precision", choices=("auto", "fp32", "bf16", "fp16"), default=None,
        help="auto (the bundle's precision: fp32 on CPUs, bf16/fp16 autocast on GPUs), fp32, bf16 (bf16 autocast with "
        "channels-last on CPUs with AVX512-BF16 or AMX; on other CPUs it falls back to fp32 and the log says so), "
        "fp16 (GPUs)",
    )  # fmt: skip
    parser.add_argument(
        "--tracking-uri", default=None,
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns.db here)",
    )  # fmt: skip
    parser.add_argument(
        "--config", dest="config_files", action="append", default=[], metavar="FILE",
        help="JSON file of bundle config overrides, e.g. configs/busi.json (repeatable; applied in order, "
        "then --set)",
    )  # fmt: skip
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a bundle config value, e.g. --set image_size=128 --set batch_size=4 "
        "(VALUE is parsed as JSON when it can be, else taken as a string); repeatable",
    )  # fmt: skip


def add_resource_args(parser: argparse.ArgumentParser) -> None:
    """Options of a training's machine resources (run settings: never written into the trained bundle)."""
    parser.add_argument("--workers", type=int, metavar="N", help="data-loader worker processes (default: the bundle's)")
    parser.add_argument(
        "--cache-rate", type=float, metavar="SHARE",
        help="share of the training set cached in memory, 0-1 (default: the bundle's)",
    )  # fmt: skip


def parse_overrides(pairs: list[str], config_files: list[str] | None = None) -> dict[str, Any]:
    """Merge override files then ``KEY=VALUE`` pairs: ``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}``.

    Keys starting with ``_`` in a file (``_comment``, ``_measured``...) document it and are not
    overrides, except ``_meta_#...`` (bundle metadata, e.g. the class names of a retargeted bundle). VALUE is parsed as JSON when it can be.

    Raises:
        ConfigError: an unreadable override file.
    """
    out: dict[str, Any] = {}
    for name in config_files or []:
        path = Path(name)
        try:
            content = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ConfigError(f"{path}: not a readable JSON override file ({err})") from err
        if not isinstance(content, dict):
            raise ConfigError(f"{path}: an override file holds one JSON object of config ids and values")
        out.update({k: v for k, v in content.items() if not k.startswith("_") or k.startswith("_meta_#")})
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def print_table(rows: list[tuple[str, str]], title: str = "") -> None:
    """Two-column table of names and values."""
    width = max(len(k) for k, _ in rows)
    if title:
        print(f"\n{title}\n" + "-" * len(title))
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")
