"""Tests of utils/log.sh: ESPnet-style `log` lines (time stamp, file:line:function, message)."""
from __future__ import annotations

import re
import subprocess


def test_log_format(tmp_path, repo_root):
    script = tmp_path / "run.sh"
    script.write_text(f'. "{repo_root}/utils/log.sh"\n'
                      'log "Stage 1: prepare"\n'
                      'stage_two() {\n'
                      '  log "Stage 2:" two words\n'
                      '}\n'
                      'stage_two\n')
    r = subprocess.run(["bash", str(script)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 2
    ts = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"
    assert re.fullmatch(ts + r" \(run\.sh:2:main\) Stage 1: prepare", lines[0]), lines[0]
    assert re.fullmatch(ts + r" \(run\.sh:4:stage_two\) Stage 2: two words", lines[1]), lines[1]
