"""Benchmark 4: dump memory and ark I/O.

* Peak RSS of `python -m s3prl.bin.extract` dumping a corpus of N and of 4N utterances, each in its
  own subprocess (ru_maxrss from os.wait4): a streaming dump stays flat.
* Throughput of `s3prl.data.ark.ArkWriter` vs writing the same matrices with kaldiio's
  WriteHelper directly (ArkWriter adds key checks, a finiteness check, atomic renames and fsync).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from s3prl.bench.common import SAMPLE_RATE, make_transformer_ckpt, synth_corpus, timed


def write_data_dir(d: Path, wavs: list, spk_count: int = 4) -> Path:
    """A Kaldi data dir over WAV files: wav.scp, utt2spk, spk2utt, utt2dur (C-sorted)."""
    import soundfile as sf

    d.mkdir(parents=True, exist_ok=True)
    (d / "wav").mkdir(exist_ok=True)
    utts = {}
    for i, w in enumerate(wavs):
        spk = f"spk{i % spk_count:02d}"
        utt = f"{spk}-utt{i:05d}"
        path = d / "wav" / f"{utt}.wav"
        sf.write(path, w, SAMPLE_RATE, subtype="PCM_16")
        utts[utt] = (spk, path, len(w) / SAMPLE_RATE)
    keys = sorted(utts, key=lambda k: k.encode())
    (d / "wav.scp").write_text("".join(f"{u} {utts[u][1]}\n" for u in keys))
    (d / "utt2spk").write_text("".join(f"{u} {utts[u][0]}\n" for u in keys))
    (d / "utt2dur").write_text("".join(f"{u} {utts[u][2]:.4f}\n" for u in keys))
    spk2utt: dict[str, list[str]] = {}
    for u in keys:
        spk2utt.setdefault(utts[u][0], []).append(u)
    (d / "spk2utt").write_text("".join(f"{s} {' '.join(v)}\n" for s, v in sorted(spk2utt.items())))
    return d


def peak_rss_mb(cmd: list[str], env: dict | None = None) -> float:
    """Run cmd in its own process and return its peak resident set size (MB)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {err.strip()[-1000:]}")
    return usage.ru_maxrss / 1024.0  # Linux: kilobytes


def bench_dump_rss(work: Path, *, n: int = 10, seconds: float = 3.0, size: str = "tiny", seed: int = 2) -> dict:
    work = Path(work)
    ckpt = make_transformer_ckpt(work / f"dump_{size}.ckpt", size=size, seed=seed)
    out = {}
    for count in (n, 4 * n):
        wavs = synth_corpus(count, seconds * 0.5, seconds * 1.5, seed)
        d = write_data_dir(work / f"data_{count}", wavs)
        cmd = [sys.executable, "-m", "s3prl.bin.extract", "--upstream", ckpt, "--layer", "all",
               "--batch-size", "4", str(d), str(work / f"dump_{count}" / "raw.1")]
        out[count] = peak_rss_mb(cmd)
    return {"n": n, "utt_seconds": seconds, "model": size, "rss_mb_n": out[n], "rss_mb_4n": out[4 * n],
            "rss_ratio": out[4 * n] / out[n]}


def bench_ark_write(work: Path, *, num: int = 200, frames: int = 500, dim: int = 768, repeats: int = 3,
                    seed: int = 3) -> dict:
    import kaldiio

    from s3prl.data.ark import ArkWriter

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    mats = {f"utt{i:05d}": rng.standard_normal((frames, dim)).astype(np.float32) for i in range(num)}
    mb = sum(m.nbytes for m in mats.values()) / 2 ** 20

    def ours():
        with ArkWriter(work / "ours.ark", work / "ours.scp") as w:
            for k, m in mats.items():
                w.write(k, m)

    def ref(sync: bool = False):
        with kaldiio.WriteHelper(f"ark,scp:{work / 'ref.ark'},{work / 'ref.scp'}") as w:
            for k, m in mats.items():
                w(k, m)
            if sync:  # the same durability as ArkWriter (fsync before the rename)
                w.fark.flush()
                os.fsync(w.fark.fileno())

    t_ref = t_ref_sync = t_ours = float("inf")
    for _ in range(repeats):  # interleaved, best of each
        t_ref = min(t_ref, timed(ref))
        t_ref_sync = min(t_ref_sync, timed(lambda: ref(True)))
        t_ours = min(t_ours, timed(ours))
    same = (work / "ours.ark").read_bytes() == (work / "ref.ark").read_bytes()
    return {"megabytes": mb, "ours_mb_per_s": mb / t_ours, "kaldiio_mb_per_s": mb / t_ref,
            "kaldiio_fsync_mb_per_s": mb / t_ref_sync, "ratio": t_ref / t_ours,
            "ratio_vs_kaldiio_fsync": t_ref_sync / t_ours, "identical_ark": same}
