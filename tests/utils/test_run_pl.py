"""Tests of utils/run.pl: Kaldi's local job runner.

As kaldi-asr/kaldi, egs/wsj/s5/utils/parallel/run.pl.
"""
from __future__ import annotations

import re
import subprocess

import pytest


@pytest.fixture
def run_pl(repo_root, tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(repo_root / "utils" / "run.pl"), *args], capture_output=True, text=True,
                              cwd=tmp_path)
    return run


def test_array_job_logs(run_pl, tmp_path):
    r = run_pl("JOB=1:3", "exp/a b/log/x.JOB.log", "echo", "job JOB", "|", "tr", "a-z", "A-Z")
    assert r.returncode == 0, r.stderr
    for j in (1, 2, 3):
        lines = (tmp_path / "exp" / "a b" / "log" / f"x.{j}.log").read_text().splitlines()
        assert lines[0] == f"# echo 'job {j}' | tr a-z A-Z"
        assert lines[1].startswith("# Started at ")
        assert lines[2] == f"JOB {j}"
        assert re.fullmatch(r"# Accounting: time=\d+ threads=1", lines[3])
        assert re.fullmatch(r"# Ended \(code 0\) at .*, elapsed time \d+ seconds", lines[4])
        assert len(lines) == 5


def test_failure_message_and_code(run_pl, tmp_path):
    r = run_pl("--mem", "4G", "--num-threads", "2", "--gpu", "0", "--time", "1:00:00",
               "JOB=1:4", "log/t.JOB.log", "[", "JOB", "-ne", "3", "]")
    assert r.returncode == 1
    assert r.stderr.strip() == "run.pl: 1 / 4 failed, log is in log/t.3.log"
    assert (tmp_path / "log" / "t.3.log").read_text().splitlines()[-1].startswith("# Ended (code 1) at ")
    assert (tmp_path / "log" / "t.2.log").read_text().splitlines()[-1].startswith("# Ended (code 0) at ")


def test_pipefail(run_pl, tmp_path):
    r = run_pl("log/p.log", "false", "|", "cat")
    assert r.returncode == 1 and "1 / 1 failed, log is in log/p.log" in r.stderr


def test_non_array_form(run_pl, tmp_path):
    r = run_pl("log/single.log", "echo", "JOB", "stays")
    assert r.returncode == 0
    assert (tmp_path / "log" / "single.log").read_text().splitlines()[:3][2] == "JOB stays"


def test_log_name_must_contain_job(run_pl):
    r = run_pl("JOB=1:2", "log/x.log", "true")
    assert r.returncode == 1 and "does not contain JOB" in r.stderr


@pytest.mark.parametrize("limit, expect_max", [(1, 1), (2, 2)])
def test_parallel_limit(run_pl, tmp_path, limit, expect_max):
    # each job registers itself in running/, records how many are running, sleeps, leaves
    body = ("mkdir -p running peak; touch running/JOB; ls running | wc -l > peak/JOB; sleep 0.5; rm running/JOB")
    r = run_pl("--max-jobs-run", str(limit), "JOB=1:4", "log/p.JOB.log", "bash", "-c", body)
    assert r.returncode == 0, r.stderr
    peaks = [int((tmp_path / "peak" / str(j)).read_text()) for j in range(1, 5)]
    assert max(peaks) == expect_max


def test_bad_max_jobs_run(run_pl):
    r = run_pl("--max-jobs-run", "zero", "JOB=1:2", "log/x.JOB.log", "true")
    assert r.returncode == 1 and "--max-jobs-run" in r.stderr
