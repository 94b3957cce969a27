"""bench/gpu_check.sh without a CUDA device: one line on stderr, exit 2, nothing written."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_without_cuda_one_line_and_nothing_written(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = tmp_path / "out dir"
    r = subprocess.run(["bash", str(REPO / "bench" / "gpu_check.sh"), str(out)], cwd=tmp_path, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "gpu_check.sh: no CUDA device (torch.cuda.is_available() is False); nothing run"]
    assert r.stdout == "" and not out.exists()
    subprocess.run(["bash", "-n", str(REPO / "bench" / "gpu_check.sh")], check=True)
