"""Messages: each failure below is one line naming the file and saying what to do, without a
traceback, and leaves what was already complete untouched.

- a missing audio file ("no such file" and its path, not libsndfile's "System error");
- a failed ``cmd |`` pipe (the command and its exit code);
- a truncated WAV (header longer than the data): a warning naming the utterance, and the frames of
  the audio present, as Kaldi's wave reader warns and reads on;
- disk full (RLIMIT_FSIZE, the harness's simulation) while saving a checkpoint, merging extraction
  jobs, splitting a data dir and writing CMVN stats: the final name of the file being written;
- an empty YAML config: refused;
- ``--device auto``: accepted wherever ``--device`` is (cuda when available, else cpu).
"""
from __future__ import annotations

import errno
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from s3prl.errors import UserError
from tests.reliability.conftest import TERA_TINY, pretrain_cmd
from tests.reliability.harness import cli, limits, tmp_leftovers, tree_digest, verb
from tests.reliability.test_bad_input import _first, _one_line_error, data  # noqa: F401 (fixture)


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _error_line(r) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ": error: " in ln]
    assert len(lines) == 1, r.stderr
    return lines[0]


# ------------------------------------------------------------------------------------ audio
def test_missing_audio_file_says_no_such_file(data, tmp_path):
    utt, path = _first(data)
    path.unlink()
    r = cli(verb("compute_feats", data, tmp_path / "raw"))
    _one_line_error(r, f"utterance {utt}: no such file {path}")
    assert "System error" not in r.stderr
    assert not (tmp_path / "raw.scp").exists() and tmp_leftovers(tmp_path) == []


def test_failed_pipe_shows_command_and_exit_code(data, tmp_path):
    utt, path = _first(data)
    scp = data / "wav.scp"
    cmd = f"cat '{path}' && exit 3"
    scp.write_text(scp.read_text().replace(str(path), f"{cmd} |", 1))
    r = cli(verb("compute_feats", data, tmp_path / "raw"))
    _one_line_error(r, f"utterance {utt}: pipe '{cmd} |' failed: exit code 3")
    # a command that is not there: bash's 127 and its own complaint
    scp.write_text(scp.read_text().replace(f"{cmd} |", "no-such-decoder -d x.flac |"))
    r = cli(verb("compute_feats", data, tmp_path / "raw"))
    _one_line_error(r, "pipe 'no-such-decoder -d x.flac |' failed: exit code 127", "command not found")
    assert not (tmp_path / "raw.scp").exists()


@pytest.mark.parametrize("via", ["file", "pipe"])
def test_truncated_wav_warns_with_the_utterance(data, tmp_path, via):
    import kaldiio

    utt, path = _first(data)
    full = path.read_bytes()
    keep = 44 + 2 * 8000  # the header and half a second of the 1 s recording
    path.write_bytes(full[:keep])
    if via == "pipe":
        scp = data / "wav.scp"
        scp.write_text(scp.read_text().replace(str(path), f"cat '{path}' |", 1))
    r = cli(verb("compute_feats", data, tmp_path / "raw"))
    assert r.returncode == 0, r.stderr
    warn = [ln for ln in r.stderr.splitlines() if "truncated WAV" in ln]
    assert len(warn) == 1 and f"utterance {utt}:" in warn[0], r.stderr
    assert "declares 32000 bytes of audio data, only 16000 are present" in warn[0]
    frames = dict(ln.split() for ln in (tmp_path / "raw.utt2num_frames").read_text().splitlines())
    assert int(frames[utt]) == 1 + (8000 - 400) // 160  # the half second present
    assert all(int(n) == 98 for u, n in frames.items() if u != utt)
    assert kaldiio.load_scp(str(tmp_path / "raw.scp"))[utt].shape[0] == int(frames[utt])


def test_streamed_wav_length_is_not_truncation(tmp_path, caplog):
    """A pipe's WAV header with the 'unknown length' sizes (sox, Kaldi's stream mode) is read to EOF."""
    import struct

    from s3prl.data.audio import clear_cache, load_audio
    x = (np.arange(4000) % 50 * 100).astype(np.int16)
    sf.write(str(tmp_path / "a.wav"), x, 16000, subtype="PCM_16")
    raw = bytearray((tmp_path / "a.wav").read_bytes())
    at = raw.index(b"data") + 4
    for size in (0x7FFFF000, 0xFFFFFFFF):
        raw[at:at + 4] = struct.pack("<I", size)
        (tmp_path / "s.wav").write_bytes(bytes(raw))
        clear_cache()
        with caplog.at_level("WARNING", logger="s3prl.data.audio"):
            y = load_audio(f"cat '{tmp_path}/s.wav' |", utt_id="s1")
        assert len(y) == 4000 and not [r for r in caplog.records if "truncated" in r.getMessage()]


# -------------------------------------------------------------------------------- disk full
def test_disk_full_saving_a_checkpoint_keeps_the_earlier_one(wav_dir, tmp_path):
    exp = tmp_path / "exp"
    r = cli(pretrain_cmd(wav_dir, exp, "--override", "runner.total_steps=4"))
    assert r.returncode == 0, r.stderr
    first = _sha(exp / "states-4.ckpt")
    assert (exp / "states-4.ckpt").stat().st_size > 100_000
    # torch.save reports the short write as a RuntimeError without errno: the writer finds out why
    r = cli(pretrain_cmd(wav_dir, exp, "--resume"), preexec=limits(fsize=100_000))
    line = _error_line(r)
    _one_line_error(r, f"{exp / 'states-8.ckpt'}: File too large while writing it", "rerun")
    assert ".tmp." not in line
    assert _sha(exp / "states-4.ckpt") == first
    assert not (exp / "states-8.ckpt").exists() and tmp_leftovers(exp) == []


def test_disk_full_splitting_a_data_dir_keeps_the_old_split(data):
    r = cli(verb("data_dir", "split", data, 2))
    assert r.returncode == 0, r.stderr
    split = data / "split2"
    old = tree_digest(split)
    (data / "text").write_text((data / "text").read_text())  # newer source: the split is stale
    r = cli(verb("data_dir", "split", data, 2), preexec=limits(fsize=60))
    line = _error_line(r)
    _one_line_error(r, f"{split}/1/", "while writing it")
    assert ".tmp." not in line
    assert tree_digest(split) == old and tmp_leftovers(data) == []


def test_disk_full_writing_cmvn_stats(data, tmp_path):
    from s3prl.bin.compute_feats import main as feats_main
    feats_main([str(data), str(tmp_path / "f" / "raw")])
    shutil.copyfile(tmp_path / "f" / "raw.scp", data / "feats.scp")
    cmvn = tmp_path / "cmvn"
    r = cli(verb("compute_cmvn_stats", data, cmvn))
    assert r.returncode == 0, r.stderr
    before = {p: _sha(p) for p in (data / "cmvn.scp", cmvn / f"cmvn_{data.name}.ark")}
    r = cli(verb("compute_cmvn_stats", data, cmvn), preexec=limits(fsize=300))
    line = _error_line(r)
    _one_line_error(r, f"{cmvn / f'cmvn_{data.name}.ark'}: File too large while writing it")
    assert ".tmp." not in line
    assert {p: _sha(p) for p in before} == before
    assert tmp_leftovers(cmvn) == [] and tmp_leftovers(data) == []


def test_disk_full_merging_extraction_jobs(wav_dir, tiny_ckpt, tmp_path):
    dump = tmp_path / "dump"
    job = dump / "ark" / wav_dir.name / "raw.1"
    r = cli(verb("extract", "--upstream", tiny_ckpt, "--layer", "last", wav_dir, job))
    assert r.returncode == 0, r.stderr
    jobs = tree_digest(dump / "ark")
    r = cli(verb("extract", "--mode", "merge", "--nj", 1, "--upstream", tiny_ckpt, "--layer", "last", wav_dir, dump),
            preexec=limits(fsize=1000))
    line = _error_line(r)
    _one_line_error(r, str(dump), "while writing it")
    assert ".tmp." not in line
    assert not list(dump.glob("layer-*/*/feats.scp")) and tmp_leftovers(dump) == []
    assert all(tree_digest(dump / "ark").get(k) == v for k, v in jobs.items())  # the job outputs intact


def test_atomic_dir_names_the_file_being_written(tmp_path):
    """A plain open()/write() inside atomic_dir names no file: the error names the newest file
    written in the directory (or the directory itself), under its final name."""
    script = ("import sys; from pathlib import Path; from s3prl.atomic import atomic_dir\n"
              "from s3prl.errors import cli_main\n"
              "def main(argv):\n"
              "    with atomic_dir(Path(sys.argv[1])) as tmp:\n"
              "        (tmp / 'small').write_text('x')\n"
              "        import time; time.sleep(0.05)\n"
              "        (tmp / 'big').write_text('y' * 5000)\n"
              "cli_main(main)\n")
    out = tmp_path / "out dir"
    r = cli([__import__("sys").executable, "-c", script, out], preexec=limits(fsize=2000))
    _one_line_error(r, f"{out / 'big'}: File too large while writing it")
    assert not out.exists() and tmp_leftovers(tmp_path) == []


def test_disk_full_error_maps_temporary_names(tmp_path):
    from s3prl.atomic import DiskFullError, atomic_path

    final = tmp_path / "x.txt"
    with pytest.raises(DiskFullError) as e:
        with atomic_path(final) as tmp:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert e.value.filename == str(final) and e.value.errno == errno.ENOSPC
    assert str(e.value).startswith(f"{final}: No space left on device while writing it")
    with pytest.raises(PermissionError):  # other errors pass through unchanged
        with atomic_path(final):
            raise PermissionError(errno.EACCES, "Permission denied", "elsewhere")


# ------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("text", ["", "# nothing but a comment\n", "{}\n"])
def test_empty_yaml_config_is_refused(tmp_path, wav_dir, text):
    from s3prl.config import ConfigError, load_config
    from s3prl.train.pretrain import PretrainConfig
    empty = tmp_path / "empty.yaml"
    empty.write_text(text)
    with pytest.raises(ConfigError, match="empty.yaml: empty config"):
        load_config(PretrainConfig, empty, [])
    r = cli(verb("compute_feats", "--config", empty, wav_dir, tmp_path / "raw"))
    _one_line_error(r, f"{empty}: empty config")
    assert not (tmp_path / "raw.scp").exists()
    load_config(PretrainConfig, TERA_TINY, [])  # a real one still loads


# -------------------------------------------------------------------------------- devices
def test_device_auto_everywhere(monkeypatch, wav_dir, tiny_ckpt, tmp_path):
    import torch

    from s3prl.train.distributed import resolve_device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device(None) == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(UserError, match="--device cuda: no CUDA device available"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    for mod in ("extract", "plot_attention", "pretrain", "train_downstream", "train_asr"):
        r = cli(verb(mod, "--help"))
        assert r.returncode == 0 and "auto" in r.stdout, (mod, r.stdout)
    r = cli(verb("extract", "--upstream", tiny_ckpt, "--layer", "last", "--device", "auto", wav_dir, tmp_path / "o"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o.utt2num_frames").is_file()
