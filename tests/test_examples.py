"""The examples run end to end (small settings) and resume from their checkpoints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_real_scale_recipe_runs_and_resumes(tmp_path, tiny_policy):
    cmd = [sys.executable, str(ROOT / "examples" / "real_scale.py"), "--model", str(tiny_policy), "--steps", "3",
           "--eval-every", "3", "--batch-size", "8", "--engine", "transformers", "--checkpoint-dir", str(tmp_path),
           "--checkpoint-every", "1"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    lines = [x for x in first.stdout.splitlines() if "held-out accuracy" in x]
    assert len(lines) == 2 and "after 192 selector rollouts" in lines[0]
    assert (tmp_path / "gps" / "checkpoint.pt").exists() and (tmp_path / "data" / "countdown_train.jsonl").exists()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)  # resumes finished runs: same result
    assert again.returncode == 0 and [x for x in again.stdout.splitlines() if "held-out accuracy" in x] == lines
