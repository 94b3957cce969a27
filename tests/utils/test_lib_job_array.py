"""utils/lib.sh's job-array helpers (used by compute_feats.sh and dump_feats.sh): the split into
per-speaker parts, `$cmd JOB=1:nj` with run.pl found in utils/, a failed job reported in one line
naming the logs, the merge of per-job lists sorted, and the --nj checks."""
from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LIB = REPO / "utils" / "lib.sh"


def _bash(script: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", f'set -euo pipefail; prog=t.sh; . "{LIB}"; {script}'],
                          capture_output=True, text=True, cwd=cwd)


def _data(tmp_path: Path) -> Path:
    d = tmp_path / "data dir"
    d.mkdir()
    utts = {"a-1": "a", "a-2": "a", "b-1": "b", "c-1": "c"}
    (d / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in utts.items()))
    (d / "spk2utt").write_text("a a-1 a-2\nb b-1\nc c-1\n")
    (d / "wav.scp").write_text("".join(f"{u} /x/{u}.wav\n" for u in utts))
    return d


def test_job_array_splits_runs_and_merges(tmp_path):
    d = _data(tmp_path)
    (tmp_path / "job.sh").write_text('sort -r "$1" > "$2"\n')
    r = _bash(f'cmd=run.pl; s3prl_job_array 2 "{d}" "{tmp_path}/log/j.JOB.log" work '
              f'bash "{tmp_path}/job.sh" "{d}/split2/JOB/utt2spk" "{tmp_path}/out.JOB"; '
              f's3prl_job_cat 2 "{tmp_path}/out.JOB"', tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == (d / "utt2spk").read_text()  # both parts, merged and sorted again
    assert sorted(p.name for p in (d / "split2").iterdir()) == ["1", "2"]
    assert (tmp_path / "log" / "j.1.log").is_file() and (tmp_path / "log" / "j.2.log").is_file()


def test_failed_job_is_one_line_naming_the_logs(tmp_path):
    d = _data(tmp_path)
    r = _bash(f'cmd=run.pl; s3prl_job_array 3 "{d}" "{tmp_path}/log/j.JOB.log" extraction '
              f'bash -c "[ JOB != 2 ]"; echo not reached', tmp_path)
    assert r.returncode == 1 and "not reached" not in r.stdout
    assert r.stderr.strip().splitlines()[-1] == f"t.sh: extraction failed; see {tmp_path}/log/j.*.log"


def test_nj_checks(tmp_path):
    d = _data(tmp_path)
    r = _bash(f's3prl_check_nj 3; s3prl_check_speakers 3 "{d}"; echo ok', tmp_path)
    assert r.returncode == 0 and r.stdout == "ok\n", r.stderr
    r = _bash(f's3prl_check_speakers 4 "{d}"', tmp_path)
    assert r.returncode == 1 and r.stderr == f"t.sh: --nj 4 is more than the number of speakers (3) in {d}\n"
    for bad in ("0", "x", ""):
        r = _bash(f's3prl_check_nj "{bad}"', tmp_path)
        assert r.returncode == 1 and r.stderr == f"t.sh: --nj must be a positive integer, got '{bad}'\n"


def test_lock_refuses_a_second_holder(tmp_path):
    lock = tmp_path / ".lock"
    r = _bash(f's3prl_lock "{lock}" mydir; s3prl_lock_again() {{ ( exec 9>&-; s3prl_lock "{lock}" mydir ); }}; '
              f's3prl_lock_again', tmp_path)
    assert r.returncode == 1
    assert r.stderr.startswith("t.sh: mydir: locked by another run (host=") and " t.sh)" in r.stderr
