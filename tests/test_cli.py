"""The CLI answers --help for itself and every subcommand, and reports errors without tracebacks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sum_monai.cli import build_parser, main


def test_help_lists_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "sum-monai" in out and "<command>" in out


def test_every_subcommand_has_help() -> None:
    parser = build_parser()
    actions = [a for a in parser._actions if a.dest == "command"]
    assert actions, "no subcommands registered"
    for name, sub in actions[0].choices.items():
        text = sub.format_help()
        assert len(sub.description or sub.format_usage()) > 10, name
        assert "usage:" in text


def test_console_script_runs() -> None:
    proc = subprocess.run([sys.executable, "-m", "sum_monai", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert proc.stdout.startswith("sum_monai ")
