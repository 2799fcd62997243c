"""The speed benchmarks the README quotes still run, print what the README says they print, and their exact paths
stay exact (small sizes here: the timings themselves are not asserted, only the outputs they compare)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> str:
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_diff2lip_speed_json_line_and_exact_default():
    summary = json.loads(_run("diff2lip_speed.py", "--tiny", "--frames", "2", "--rounds", "1").strip().splitlines()[-1])
    for key in ("fp32_s", "default_s", "default_maxdiff", "default_pixel_maxdiff", "speedup"):
        assert key in summary, key
    assert summary["default_batch"] == 1  # CPU
    assert summary["default_maxdiff"] <= 1e-4
    assert summary["default_pixel_maxdiff"] == 0
    assert "compiled_s" not in summary  # compile is opt-in (--compile), like the loader's switch


def test_rasterizer_benchmark_compositors_agree():
    out = _run("gaussian_rasterizer.py", "--size", "96", "--repeat", "1", "--threads", "2")
    differences = [float(value) for value in re.findall(r"max \|difference\| to torch\+numba: (\S+)", out)]
    assert len(differences) == 2, out
    assert max(differences) <= 1e-4
