"""utils/with_lock.sh: a second run on a locked dir exits 1 naming the holder before its job runner
touches the holder's log; the lock dies with its holder; the command's exit status passes through."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WITH_LOCK = REPO / "utils" / "with_lock.sh"
RUN_PL = REPO / "utils" / "run.pl"


def test_second_run_refused_and_holders_log_untouched(tmp_path):
    d = tmp_path / "exp dir"
    log = d / "log" / "train.log"
    first = subprocess.Popen(["bash", str(WITH_LOCK), str(d), str(RUN_PL), str(log), "sleep", "3"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while not (log.is_file() and "sleep 3" in log.read_text()):
        assert time.monotonic() - t0 < 30 and first.poll() is None
        time.sleep(0.02)
    before = log.read_text()
    r = subprocess.run(["bash", str(WITH_LOCK), str(d), str(RUN_PL), str(log), "true"], capture_output=True,
                       text=True, cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.strip() == f"with_lock.sh: {d}: locked by another run ({(d / 'log' / '.run.lock').read_text().strip()})"
    assert f"pid={first.pid}" in r.stderr
    assert log.read_text() == before and "# Ended" not in before
    assert first.wait(timeout=30) == 0 and "# Ended (code 0)" in log.read_text()
    # free again: the next run goes, and a failing command's status comes back
    r = subprocess.run(["bash", str(WITH_LOCK), str(d), "bash", "-c", "exit 3"], capture_output=True, text=True)
    assert r.returncode == 3


def test_lock_dies_with_a_killed_holder(tmp_path):
    d = tmp_path / "exp"
    first = subprocess.Popen(["bash", str(WITH_LOCK), str(d), "sleep", "30"], start_new_session=True)
    t0 = time.monotonic()
    while not (d / "log" / ".run.lock").is_file() or "pid=" not in (d / "log" / ".run.lock").read_text():
        assert time.monotonic() - t0 < 30
        time.sleep(0.02)
    assert subprocess.run(["bash", str(WITH_LOCK), str(d), "true"], capture_output=True).returncode == 1
    os.killpg(first.pid, 9)
    first.wait()
    assert subprocess.run(["bash", str(WITH_LOCK), str(d), "true"], capture_output=True).returncode == 0


def test_refused_while_a_direct_verb_run_holds_the_dir(tmp_path):
    import fcntl

    d = tmp_path / "exp"
    d.mkdir()
    with open(d / ".lock", "a+") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        holder.write("host=elsewhere pid=4242 started=now train_downstream\n")
        holder.flush()
        r = subprocess.run(["bash", str(WITH_LOCK), str(d), "touch", str(d / "ran")], capture_output=True, text=True)
    assert r.returncode == 1 and "pid=4242" in r.stderr and not (d / "ran").exists()
