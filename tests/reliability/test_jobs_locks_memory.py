"""Job runner (a failing job among nj), concurrency (a second run of a stage on the same output
exits at once naming the lock holder) and long input (memory bounded by the chunk size)."""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from tests.reliability.conftest import pretrain_cmd
from tests.reliability.harness import PY, REPO, cli, env, peak_rss_cmd, tmp_leftovers, verb


def _copy(wav_dir: Path, d: Path) -> Path:
    shutil.copytree(wav_dir, d)
    (d / "wav.scp").write_text((d / "wav.scp").read_text().replace(str(wav_dir), str(d)))
    return d


def test_failing_job_reported_and_only_it_redone(tmp_path, wav_dir):
    data = _copy(wav_dir, tmp_path / "data")
    last = (data / "wav.scp").read_text().splitlines()[-1].split(" ", 1)[1]  # a job-2 utterance
    good = Path(last).read_bytes()
    Path(last).write_bytes(b"RIFF" + b"\0" * 40)
    cmd = ["bash", REPO / "utils/compute_feats.sh", "--nj", "2", data, tmp_path / "log", tmp_path / "f"]
    r = cli(cmd)
    assert r.returncode != 0
    assert "1 / 2 failed" in r.stderr and str(tmp_path / "log" / "compute_feats.2.log") in r.stderr, r.stderr
    assert "cannot read audio" in (tmp_path / "log" / "compute_feats.2.log").read_text()
    job1 = tmp_path / "f" / "raw_fbank_data.1.ark"
    assert job1.is_file() and not (tmp_path / "f" / "raw_fbank_data.2.ark").exists()
    before = job1.stat().st_mtime_ns, job1.read_bytes()
    assert not (data / "feats.scp").exists() and not (data / "conf" / "feats.yaml").exists()
    Path(last).write_bytes(good)
    r = cli(cmd)
    assert r.returncode == 0, r.stderr
    assert (job1.stat().st_mtime_ns, job1.read_bytes()) == before  # job 1 was not redone
    assert "skipping" in (tmp_path / "log" / "compute_feats.1.log").read_text()
    assert len((data / "feats.scp").read_text().splitlines()) == 8
    assert tmp_leftovers(tmp_path / "f") == []


def _wait_for(cond, timeout=120.0):
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout
        time.sleep(0.02)


def test_second_run_refused_while_first_holds_the_lock(tmp_path, wav_dir, tiny_ckpt):
    # pretrain: 400 steps (seconds) rather than the fixture's 12, so that the first run still holds
    # the lock when the second has started (12 steps could end while the second imported torch)
    exp = tmp_path / "exp"
    steps = ("--override", "runner.total_steps=400", "--override", "runner.save_step=100")
    first = subprocess.Popen(pretrain_cmd(wav_dir, exp, *steps), env=env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: (exp / ".lock").is_file() and (exp / ".lock").read_text().strip() != "")
    r = cli(pretrain_cmd(wav_dir, exp, *steps))
    assert r.returncode == 1 and "locked by another run" in r.stderr and f"pid={first.pid}" in r.stderr, r.stderr
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert (exp / "states-400.ckpt").is_file()
    # compute_feats.sh
    data = _copy(wav_dir, tmp_path / "data")
    cmd = ["bash", REPO / "utils/compute_feats.sh", "--nj", "2", data, tmp_path / "log", tmp_path / "f"]
    first = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: (data / ".lock").is_file() and "pid=" in (data / ".lock").read_text())
    r = cli(cmd)
    assert r.returncode == 1 and "locked by another run" in r.stderr and f"pid={first.pid}" in r.stderr, r.stderr
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert len((data / "feats.scp").read_text().splitlines()) == 8 and (data / "conf" / "feats.yaml").is_file()


def _long_dir(root: Path, seconds: float) -> Path:
    d = root / f"long{int(seconds)}"
    d.mkdir(parents=True)
    n = int(seconds * 16000)
    t = np.arange(n, dtype=np.float64)
    x = (0.2 * np.sin(2 * np.pi * 180 * t / 16000) + 0.01 * np.random.default_rng(0).standard_normal(n))
    sf.write(str(d / "a.flac"), x.astype(np.float32), 16000, subtype="PCM_16")
    (d / "wav.scp").write_text(f"spk-a {d / 'a.flac'}\n")
    (d / "utt2spk").write_text("spk-a spk\n")
    (d / "spk2utt").write_text("spk spk-a\n")
    return d


def test_long_utterance_memory_is_bounded(tmp_path, tiny_ckpt):
    peaks = {}
    for sec in (150, 600):
        d = _long_dir(tmp_path, sec)
        rss_f, r = peak_rss_cmd(verb("compute_feats", d, tmp_path / f"f{sec}" / "raw"))
        assert r.returncode == 0, r.stderr
        rss_e, r = peak_rss_cmd(verb("extract", "--upstream", tiny_ckpt, "--layer", "last", d,
                                     tmp_path / f"e{sec}" / "raw"))
        assert r.returncode == 0, r.stderr
        n = int((tmp_path / f"e{sec}" / "raw.utt2num_frames").read_text().split()[1])
        assert n == 1 + (sec * 16000 - 400) // 160
        peaks[sec] = (rss_f, rss_e)
    for k in range(2):
        ratio = peaks[600][k] / peaks[150][k]
        assert ratio < 2.0, (k, peaks)


def test_dump_refused_while_another_dump_holds_the_lock(tmp_path, wav_dir, tiny_ckpt):
    import fcntl

    dump = tmp_path / "dump"
    dump.mkdir()
    lock = dump / f".{wav_dir.name}.lock"
    with open(lock, "a+") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        holder.write("host=elsewhere pid=4242 started=now dump_feats.sh\n")
        holder.flush()
        r = cli(["bash", REPO / "utils/dump_feats.sh", "--nj", "1", tiny_ckpt, wav_dir, dump])
    assert r.returncode == 1, r.stderr
    assert "locked by another run" in r.stderr and "pid=4242" in r.stderr, r.stderr
    assert not list(dump.glob("layer-*")), "a refused run wrote output"
