"""Tests of utils/recipe.sh, the start every egs/*/run.sh sources: options parsed into the
configuration section, a leftover argument refused with the help message, `abspath` against the
caller's directory, `log` defined; from another directory and through paths with spaces."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

RUN = """#!/usr/bin/env bash
set -euo pipefail
stage=0
data_dir=
help_message="Usage: $0 [options]"
caller_pwd=$PWD
cd "$(dirname "$0")"
. utils/recipe.sh "$@"
printf 'stage=[%s] data=[%s] empty=[%s] cmd=[%s] pwd=[%s]\\n' "$stage" "$(abspath "$data_dir")" "$(abspath "")" \\
  "$train_cmd" "$PWD"
log "done"
"""


@pytest.fixture
def recipe(tmp_path, repo_root):
    d = tmp_path / "egs dir" / "demo"
    d.mkdir(parents=True)
    os.symlink(repo_root / "utils", d / "utils")
    (d / "path.sh").write_text("export DEMO_PATH_SOURCED=1\n")
    (d / "cmd.sh").write_text("export train_cmd=\"run.pl\"\n")
    (d / "run.sh").write_text(RUN)
    caller = tmp_path / "caller dir"
    caller.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(d / "run.sh"), *args], capture_output=True, text=True, cwd=caller)
    return run, d, caller


def test_options_abspath_and_log(recipe):
    run, d, caller = recipe
    r = run("--stage", "3", "--data-dir", "my data")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"stage=[3] data=[{caller}/my data] empty=[] cmd=[run.pl] pwd=[{d}]\n"
    assert "(run.sh:" in r.stderr and r.stderr.rstrip().endswith("done")
    r = run("--data-dir", "/abs/x")
    assert "data=[/abs/x]" in r.stdout


def test_leftover_argument_and_unknown_option_are_refused(recipe):
    run, d, _ = recipe
    r = run("--stage", "2", "extra")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.splitlines()[0] == f"{d}/run.sh: unexpected argument: extra"
    assert "Usage:" in r.stderr
    r = run("--no-such-option", "1")
    assert r.returncode != 0 and "--no-such-option" in r.stderr and r.stdout == ""
