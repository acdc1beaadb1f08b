"""The benches' baseline trees start this tree's moto server, whatever their own devserver/ holds.

bench/stream.py and bench/chat_path.py run an older commit's stack beside this one's with this
tree's emulator (bench.stream.baseline_tree): every file that emulator imports must come along, or
the older stack's moto exits at its first import (3a11521 has no moto_cognito.py).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.stream import BASELINE_REF, baseline_tree


@pytest.mark.parametrize("ref", [BASELINE_REF, "3a11521"])  # bench.stream's default; docs/PERFORMANCE.md's chat_path
def test_a_baseline_tree_runs_this_trees_moto_server(tmp_path: Path, ref: str) -> None:
    tree = baseline_tree(ref, tmp_path / "tree")
    run = subprocess.run([sys.executable, str(tree / "devserver" / "moto_atomic.py"), "--help"],
                         check=False, capture_output=True, text=True, timeout=60, cwd=tree)
    assert run.returncode == 0, run.stderr
    assert "usage" in run.stdout.lower()
