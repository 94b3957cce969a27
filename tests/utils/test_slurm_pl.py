"""Tests of utils/slurm.pl with a fake `sbatch` first on PATH (no cluster): one array job, option
translation through the config, the batch script under q/, run.pl-style logs and failure report."""
from __future__ import annotations

import os
import re
import subprocess

import pytest

FAKE_SBATCH = r"""#!/usr/bin/env bash
# Fake sbatch: records its arguments, then runs every array task locally, in the background (as a
# real queue would), with SLURM_ARRAY_TASK_ID set and -o's %a replaced by the task id.
printf '%s\n' "$*" >> "$FAKE_SBATCH_LOG"
array=""; out=""; script=""
while [ $# -gt 0 ]; do
  case "$1" in
    --array=*) array=${1#--array=}; shift ;;
    -o) out=$2; shift 2 ;;
    -J|-p|--time|--mem-per-cpu|--cpus-per-task|--gres) shift 2 ;;
    -*) shift ;;
    *) script=$1; shift ;;
  esac
done
range=${array%%\%*}
( for i in $(seq "${range%-*}" "${range#*-}"); do
    SLURM_ARRAY_TASK_ID=$i bash "$script" > "${out//%a/$i}" 2>&1
  done ) < /dev/null > /dev/null 2>&1 &
echo "Submitted batch job 4242"
"""


@pytest.fixture
def slurm(repo_root, tmp_path):
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    (bindir / "sbatch").write_text(FAKE_SBATCH)
    (bindir / "sbatch").chmod(0o755)
    work = tmp_path / "work dir"
    work.mkdir()
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}", FAKE_SBATCH_LOG=str(tmp_path / "sbatch.args"))

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(repo_root / "utils" / "slurm.pl"), *args], capture_output=True, text=True,
                              cwd=work, env=env, timeout=60)
    run.work = work
    run.args_file = tmp_path / "sbatch.args"
    return run


def test_array_job_default_config(slurm):
    r = slurm("--mem", "2G", "--gpu", "1", "--num-threads", "4", "--max-jobs-run", "2",
              "JOB=1:3", "exp/x/log/feat.JOB.log", "echo", "task JOB", "|", "tr", "a-z", "A-Z")
    assert r.returncode == 0, r.stderr
    calls = slurm.args_file.read_text().splitlines()
    assert len(calls) == 1  # ONE array job
    args = calls[0]
    assert args.startswith("--export=PATH --ntasks-per-node=1 ")
    for flag in ("--mem-per-cpu 2G", "-p gpu --gres=gpu:1", "--cpus-per-task 4", "--array=1-3%2"):
        assert flag in args, (flag, args)
    assert args.endswith("exp/x/q/feat.sh")  # exp/x/log/q collapses to exp/x/q
    assert (slurm.work / "exp" / "x" / "q" / "feat.sh").is_file()
    for j in (1, 2, 3):
        lines = (slurm.work / "exp" / "x" / "log" / f"feat.{j}.log").read_text().splitlines()
        assert lines[0] == f"# echo 'task {j}' | tr a-z A-Z"
        assert lines[1].startswith("# Started at ")
        assert lines[2] == f"TASK {j}"
        assert re.fullmatch(r"# Accounting: time=\d+ threads=1", lines[3])
        assert lines[4].startswith("# Ended (code 0) at ")
    assert not list((slurm.work / "exp" / "x" / "q").glob("done.*"))  # status files cleaned up


def test_failure_report(slurm):
    r = slurm("JOB=1:3", "log/t.JOB.log", "test", "JOB", "-ne", "2")
    assert r.returncode == 1
    assert r.stderr.strip() == "slurm.pl: 1 / 3 failed, log is in log/t.2.log"
    assert (slurm.work / "log" / "t.2.log").read_text().splitlines()[-1].startswith("# Ended (code 1) at ")
    assert "--array=1-3 " in slurm.args_file.read_text()


def test_config_file_and_unknown_option(slurm):
    conf = slurm.work / "conf" / "slurm.conf"
    conf.parent.mkdir()
    conf.write_text("command sbatch --export=PATH\n"
                    "option mem=* --mem $0  # a comment\n"
                    "default gpu=0\n"
                    "option gpu=0 -p cpu\n"
                    "option gpu=* -p gpu --gres=gpu:$0\n"
                    "option time=* --time $0\n")
    r = slurm("--mem", "8G", "--time", "2:00:00", "x.log", "true")  # conf/slurm.conf is the default
    assert r.returncode == 0, r.stderr
    args = slurm.args_file.read_text().splitlines()[-1]
    assert args.startswith("--export=PATH --mem 8G --time 2:00:00 -p cpu ") and "--array=1-1" in args
    assert (slurm.work / "x.log").read_text().splitlines()[-1].startswith("# Ended (code 0)")
    r = slurm("--num-threads", "2", "y.log", "true")
    assert r.returncode == 1 and "option --num-threads is not defined in the config" in r.stderr
    r = slurm("--config", "conf/none.conf", "y.log", "true")
    assert r.returncode == 1 and "conf/none.conf" in r.stderr
