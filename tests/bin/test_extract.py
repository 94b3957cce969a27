"""Tests of s3prl.bin.extract and utils/dump_feats.sh: dump with nj=2, validate, read back with
kaldiio and the independent reader, equality with the direct forward, skip, wrong upstream, bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf
import torch

from s3prl.data.kaldi_dir import read_kv, validate_data_dir
from s3prl.errors import UserError
from s3prl.upstream.hub import load_upstream
from tests.conftest import write_data_dir
from tests.kaldi_binary import read_ark, read_scp_entry
from tests.upstream.test_hub import make_ckpt

REPO = Path(__file__).resolve().parents[2]
LENGTHS = [8000, 6123, 9999, 4400, 7010, 5555]  # samples per utterance, in C order of utt ids


def env():
    e = dict(os.environ)
    e["PATH"] = f"{REPO / 'utils'}:{Path(sys.executable).parent}:{e['PATH']}"
    e["LC_ALL"] = "C"
    e["PYTHONPATH"] = f"{REPO}:{e.get('PYTHONPATH', '')}"
    return e


def run(args, **kw):
    return subprocess.run(args, env=env(), capture_output=True, text=True, **kw)


def make_data(path: Path) -> Path:
    d = write_data_dir(path, speakers=("1001", "1002", "1003"), utts_per_speaker=2)
    rng = np.random.default_rng(3)
    wav_scp = read_kv(d / "wav.scp")
    dur = {}
    for utt, n in zip(sorted(wav_scp), LENGTHS):
        sf.write(wav_scp[utt], (0.2 * rng.standard_normal(n)).astype(np.float32), 16000, subtype="PCM_16")
        dur[utt] = f"{n / 16000:g}"
    (d / "utt2dur").write_text("".join(f"{u} {dur[u]}\n" for u in sorted(dur)))
    # A TIMIT-style sclite reference: PyTorch-Kaldi's TIMIT scorer reads it from the dumped dir.
    (d / "stm").write_text("".join(f"{u} 1 {u.split('-')[0]} 0.0 {dur[u]} <O,M> a b\n" for u in sorted(dur)))
    (d / "glm").write_text(";; empty.glm\n")
    return d


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("dump")
    ckpt = make_ckpt(root / "dir with space" / "tera.ckpt", dr=3)
    data = make_data(root / "data" / "train")
    return root, ckpt, data


@pytest.fixture(scope="module")
def dumped(setup):
    root, ckpt, data = setup
    dump = root / "dump" / "tera_tiny"
    r = run([str(REPO / "utils" / "dump_feats.sh"), "--nj", "2", "--batch-size", "2", ckpt, str(data), str(dump)])
    assert r.returncode == 0, r.stderr
    return dump


def test_dump_nj2_layout_and_interop(setup, dumped):
    root, ckpt, data = setup
    up = load_upstream(ckpt)
    utts = sorted(read_kv(data / "utt2spk"))
    assert sorted((dumped / "log" / "train").glob("extract.*.log")) == \
        [dumped / "log" / "train" / f"extract.{j}.log" for j in (1, 2)]
    assert json.loads((dumped / "upstream.json").read_text())["path"] == str(Path(ckpt).resolve())
    from s3prl.data.audio import load_audio

    wavs = {u: torch.from_numpy(load_audio(e, utt_id=u)) for u, e in read_kv(data / "wav.scp").items()}
    direct = {u: up([wavs[u]]) for u in utts}
    for k in range(3):
        d = dumped / f"layer-{k}" / "train"
        validate_data_dir(d)
        for name in ("utt2spk", "spk2utt", "text", "wav.scp", "utt2dur", "stm", "glm"):
            assert (d / name).read_bytes() == (data / name).read_bytes()
        assert (d / "feats_dim").read_text() == "32\n" and (d / "frame_shift").read_text() == "0.01\n"
        nframes = {u: int(v) for u, v in read_kv(d / "utt2num_frames").items()}
        assert nframes == {u: 1 + (n - 400) // 160 for u, n in zip(utts, LENGTHS)}
        scp_text = (d / "feats.scp").read_text()
        keys = [ln.split()[0] for ln in scp_text.splitlines()]
        assert keys == sorted(keys, key=str.encode) == utts
        by_kaldiio = dict(kaldiio.load_scp_sequential(str(d / "feats.scp")))
        for line in scp_text.splitlines():
            utt, entry = line.split(" ", 1)
            assert os.path.isabs(entry.split(":")[0])
            mine = read_scp_entry(entry)
            assert mine.shape == (nframes[utt], 32)
            np.testing.assert_array_equal(mine, by_kaldiio[utt])
            np.testing.assert_allclose(mine, direct[utt].hidden_states[k][0].numpy(), atol=1e-5, rtol=0)
        # Per-speaker CMVN stats = sums and sums of squares of that speaker's frames.
        cmvn = read_kv(d / "cmvn.scp")
        assert sorted(cmvn) == ["1001", "1002", "1003"]
        for spk in cmvn:
            st = read_scp_entry(cmvn[spk])
            frames = np.concatenate([by_kaldiio[u] for u in utts if u.startswith(spk + "-")]).astype(np.float64)
            assert st.dtype == np.float64 and st.shape == (2, 33)
            np.testing.assert_allclose(st[0, :32], frames.sum(0), rtol=1e-5, atol=1e-3)
            np.testing.assert_allclose(st[1, :32], (frames ** 2).sum(0), rtol=1e-5, atol=1e-3)
            assert st[0, 32] == len(frames)
    # The per-job arks are read by the independent reader too.
    ark = read_ark(dumped / "ark" / "train" / "raw.1.layer-2.ark")
    assert len(ark) > 0 and all(m.shape[1] == 32 for m in ark.values())
    r = run([str(REPO / "utils" / "validate_data_dir.sh"), str(dumped / "layer-2" / "train")])
    assert r.returncode == 0, r.stderr


def test_rerun_skips_and_wrong_upstream(setup, dumped):
    root, ckpt, data = setup
    scp = dumped / "layer-1" / "train" / "feats.scp"
    before = scp.stat().st_mtime_ns
    r = run([str(REPO / "utils" / "dump_feats.sh"), "--nj", "2", ckpt, str(data), str(dumped)])
    assert r.returncode == 0 and "skip" in r.stdout, r.stderr
    assert scp.stat().st_mtime_ns == before
    other = make_ckpt(root / "other.ckpt", dr=1, seq=100)
    r = run([str(REPO / "utils" / "dump_feats.sh"), "--nj", "2", other, str(data), str(dumped)])
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()[-1]
    assert "other.ckpt" in err and "tera.ckpt" in err and "made from upstream" in err
    assert scp.stat().st_mtime_ns == before


def test_chunk_context_dump_is_recorded_and_kept_apart(setup, tmp_path):
    root, ckpt, data = setup
    short = make_ckpt(root / "short.ckpt", dr=1, seq=40)     # utterances of 27-62 frames: some chunked
    dump = tmp_path / "dump"
    r = run([str(REPO / "utils" / "dump_feats.sh"), "--nj", "1", "--layer", "last", "--chunk-context", "8",
             short, str(data), str(dump)])
    assert r.returncode == 0, r.stderr
    info = json.loads((dump / "upstream.json").read_text())
    assert info["chunk_context"] == 8
    up = load_upstream(short)
    up.chunk_context = 8
    utt = "1002-101-0000"                                   # 9999 samples: 61 frames > 40
    wav = torch.from_numpy(sf.read(read_kv(data / "wav.scp")[utt], dtype="float32")[0])
    got = read_scp_entry(read_kv(dump / "layer-2" / "train" / "feats.scp")[utt])
    np.testing.assert_allclose(got, up([wav]).last_hidden_state[0].numpy(), atol=1e-5)
    up.chunk_context = 0
    assert not np.allclose(got, up([wav]).last_hidden_state[0].numpy(), atol=1e-3)
    # the same dump dir with another chunk context is another dump: refused, nothing touched
    r = run([str(REPO / "utils" / "dump_feats.sh"), "--nj", "1", "--layer", "last", short, str(data), str(dump)])
    assert r.returncode != 0 and "with chunk context 8" in r.stderr.strip().splitlines()[-1], r.stderr
    r = run([str(REPO / "utils" / "dump_feats.sh"), "--nj", "1", "--chunk-context", "x", short, str(data), str(dump)])
    assert r.returncode != 0 and "--chunk-context must be a non-negative integer" in r.stderr
    from s3prl.bin import extract as extract_cli
    with pytest.raises(UserError, match="--chunk-context: must be >= 0"):
        extract_cli.main(["--upstream", short, "--chunk-context", "-1", str(data), str(tmp_path / "raw")])


def test_extract_single_job_last_layer_compressed(setup, tmp_path):
    root, ckpt, data = setup
    from s3prl.dump import extract

    layers = extract(ckpt, data, tmp_path / "out" / "raw", layers="last", batch_size=4, compress=True)
    assert layers == [2]
    scp = tmp_path / "out" / "raw.layer-2.scp"
    assert not (tmp_path / "out" / "raw.layer-0.scp").exists()
    up = load_upstream(ckpt)
    ref = up([torch.from_numpy(sf.read(read_kv(data / "wav.scp")["1001-100-0000"], dtype="float32")[0])])
    got = read_scp_entry(read_kv(scp)["1001-100-0000"])  # CM, lossy
    np.testing.assert_allclose(got, ref.last_hidden_state[0].numpy(), atol=0.05 * float(ref.last_hidden_state.abs().max()))


def test_bad_inputs(setup, tmp_path):
    root, ckpt, data = setup
    # An utterance whose audio cannot be read: one-line error naming it, no scp left behind.
    bad = make_data(tmp_path / "bad")
    wav_scp = read_kv(bad / "wav.scp")
    Path(wav_scp["1002-101-0001"]).write_bytes(b"not a wav file")
    r = run([sys.executable, "-m", "s3prl.bin.extract", "--upstream", ckpt, str(bad), str(tmp_path / "o" / "raw")])
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert "error: utterance 1002-101-0001: cannot read audio" in last
    assert not list((tmp_path / "o").glob("*.scp")) and not list((tmp_path / "o").glob("*.ark"))
    # Layer out of range.
    with pytest.raises(UserError, match="layer 5 is out of range; this upstream has 3 hidden states"):
        from s3prl.dump import extract
        extract(ckpt, data, tmp_path / "o2" / "raw", layers="5")
    # Empty data dir.
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "utt2spk").write_text("")
    (empty / "wav.scp").write_text("")
    with pytest.raises(UserError, match="empty"):
        extract(ckpt, empty, tmp_path / "o3" / "raw")
    r = run([str(REPO / "utils" / "dump_feats.sh"), ckpt, str(empty), str(tmp_path / "d0")])
    assert r.returncode != 0 and "empty" in r.stderr
    # nj larger than the number of speakers.
    r = run([str(REPO / "utils" / "dump_feats.sh"), "--nj", "4", "fbank", str(data), str(tmp_path / "d1")])
    assert r.returncode != 0 and "--nj 4 is more than the number of speakers (3)" in r.stderr
    assert not list((tmp_path / "d1").rglob("feats.scp"))


def test_external_features_dim_mismatch(setup, tmp_path):
    """A checkpoint without an audio section reads the data dir's feats.scp; 39-dim features for
    an 80-dim model is an error naming both dims."""
    root, ckpt, data = setup
    from s3prl.dump import extract
    from s3prl.data.ark import ArkWriter

    ext = make_ckpt(tmp_path / "fmllr.ckpt", dr=1, audio={}, input_dim=40)
    d = tmp_path / "fm"
    d.mkdir()
    for name in ("utt2spk", "spk2utt"):
        (d / name).write_bytes((data / name).read_bytes())
    rng = np.random.default_rng(0)
    utts = sorted(read_kv(data / "utt2spk"))
    with ArkWriter(tmp_path / "fm.ark", d / "feats.scp") as w:
        for u in utts:
            w.write(u, rng.standard_normal((30, 40)).astype(np.float32))
    extract(ext, d, tmp_path / "x" / "raw", layers="last", apply_cmvn=False)
    up = load_upstream(ext)
    feats = torch.from_numpy(read_scp_entry(read_kv(d / "feats.scp")[utts[0]]).copy())
    ref = up.forward_features(feats[None], torch.tensor([30])).last_hidden_state[0].numpy()
    np.testing.assert_allclose(read_scp_entry(read_kv(tmp_path / "x" / "raw.layer-2.scp")[utts[0]]), ref, atol=1e-5)
    with ArkWriter(tmp_path / "fm39.ark", d / "feats.scp") as w:
        for u in utts:
            w.write(u, rng.standard_normal((30, 39)).astype(np.float32))
    with pytest.raises(UserError, match="feature dim 39 does not match the upstream's input dim 40"):
        extract(ext, d, tmp_path / "y" / "raw")
    assert not list((tmp_path / "y").glob("*.scp"))


def test_dump_does_not_depend_on_batch_or_job_split(setup, tmp_path):
    """The same upstream dumped with nj 1 or 3 and batch 1 or 8 gives the same matrices (read back
    by kaldiio, <= 1e-6): a 12-frame chunk with 3 frames of context puts every utterance (27-62
    frames) through several windows, and batches of 8 mix lengths."""
    root, _, data = setup
    short = make_ckpt(root / "chunked.ckpt", dr=1, seq=12)
    dumps = {}
    for nj in (1, 3):
        for bs in (1, 8):
            dump = tmp_path / f"nj{nj}_bs{bs}"
            r = run([str(REPO / "utils" / "dump_feats.sh"), "--nj", str(nj), "--batch-size", str(bs),
                     "--chunk-context", "3", short, str(data), str(dump)])
            assert r.returncode == 0, r.stderr
            dumps[nj, bs] = {k: {u: np.array(m) for u, m in kaldiio.load_scp(str(dump / f"layer-{k}" / "train" / "feats.scp")).items()}
                             for k in range(3)}
    ref = dumps[1, 1]
    assert sorted(ref[2]) == sorted(read_kv(data / "utt2spk"))
    for key, d in dumps.items():
        for k in range(3):
            for u, m in ref[k].items():
                assert d[k][u].shape == m.shape
                np.testing.assert_allclose(d[k][u], m, atol=1e-6, rtol=0, err_msg=f"{key} layer {k} {u}")


def test_cuda_without_a_device_refused_before_anything_is_written(setup, tmp_path):
    """dump_feats.sh resolves the dtype for the device once, before any job: float32 on cpu or auto
    is float32 without asking Python, --device cuda still goes through s3prl.precision, so on a
    machine without CUDA (CUDA_VISIBLE_DEVICES empty) it is one line naming the option, and no job
    ran: no completion record, arks or logs."""
    _, ckpt, data = setup
    dump = tmp_path / "d"
    r = subprocess.run([str(REPO / "utils" / "dump_feats.sh"), "--nj", "1", "--device", "cuda", ckpt, str(data),
                        str(dump)], env={**env(), "CUDA_VISIBLE_DEVICES": ""}, capture_output=True, text=True)
    assert r.returncode != 0 and "--device cuda: no CUDA device available" in r.stderr.strip().splitlines()[-1], \
        r.stderr
    assert not [p.name for p in dump.iterdir() if not p.name.endswith(".lock")]


def test_dtype_bfloat16_dump_is_recorded_and_kept_apart(setup, dumped, tmp_path, monkeypatch, capfd):
    """--dtype bfloat16: the model runs under bf16 autocast (states within bf16 rounding of the
    float32 dump, not equal to it), upstream.json records the dtype, the float32 dump dir refuses
    it, and `--mode layers` accepts the dump's own dtype. A CPU without bf16 units dumps float32
    with one warning and records nothing."""
    from s3prl import precision
    from s3prl import dump as dump_lib
    from s3prl.bin import extract as extract_cli

    root, ckpt, data = setup
    # the float32 dump dir made by `dumped` is another dump: refused with both named, nothing touched
    scp = dumped / "layer-1" / "train" / "feats.scp"
    before = scp.stat().st_mtime_ns
    r = run([str(REPO / "utils" / "dump_feats.sh"), "--nj", "2", "--dtype", "bfloat16", ckpt, str(data), str(dumped)])
    if precision.cpu_supports_bf16():
        assert r.returncode != 0 and "in bfloat16" in r.stderr.strip().splitlines()[-1], r.stderr
    assert scp.stat().st_mtime_ns == before
    r = run([str(REPO / "utils" / "dump_feats.sh"), "--dtype", "float16", ckpt, str(data), str(tmp_path / "d16")])
    assert r.returncode != 0 and "--dtype must be float32 or bfloat16, got 'float16'" in r.stderr
    if precision.cpu_supports_bf16():
        dump = tmp_path / "bf16"
        r = run([str(REPO / "utils" / "dump_feats.sh"), "--nj", "1", "--dtype", "bfloat16", ckpt, str(data), str(dump)])
        assert r.returncode == 0, r.stderr
        assert json.loads((dump / "upstream.json").read_text())["dtype"] == "bfloat16"
        assert json.loads((dump / "complete" / "train.json").read_text())["dtype"] == "bfloat16"
        for k in (1, 2):
            b16 = {u: np.array(m) for u, m in kaldiio.load_scp(str(dump / f"layer-{k}" / "train" / "feats.scp")).items()}
            f32 = {u: np.array(m) for u, m in kaldiio.load_scp(str(dumped / f"layer-{k}" / "train" / "feats.scp")).items()}
            for u in f32:
                assert b16[u].dtype == np.float32 and b16[u].shape == f32[u].shape
                diff = float(np.abs(b16[u] - f32[u]).max())
                assert 0 < diff < 0.1 * float(np.abs(f32[u]).max()), (k, u, diff)
        # rerun: complete, skipped; layers mode finds it without being told the dtype
        r = run([str(REPO / "utils" / "dump_feats.sh"), "--nj", "1", "--dtype", "bfloat16", ckpt, str(data), str(dump)])
        assert r.returncode == 0 and "skip" in r.stdout, r.stderr
        assert dump_lib.dump_layer_dirs(ckpt, dump, ["train"], "last") == [dump / "layer-2"]
        with pytest.raises(UserError, match="in bfloat16, not"):
            dump_lib.dump_layer_dirs(ckpt, dump, ["train"], "last", dtype="float32")
    # No bf16 units: float32 with one warning, recorded as a float32 dump (no dtype key).
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: False)
    assert precision.resolve_dtype("bfloat16", "cpu") == "float32"
    assert precision.resolve_dtype("bfloat16", "cuda") == "bfloat16"
    with pytest.raises(UserError, match="--dtype float16: not one of float32, bfloat16"):
        precision.resolve_dtype("float16", "cpu")
    capfd.readouterr()
    out = tmp_path / "fallback" / "raw"
    extract_cli.main(["--upstream", ckpt, "--layer", "last", "--dtype", "bfloat16", str(data), str(out)])
    warnings = [ln for ln in capfd.readouterr().err.splitlines() if "WARNING" in ln]
    assert len(warnings) == 1 and warnings[0].endswith(
        "--dtype bfloat16: this CPU has no bf16 matrix units (AVX512-BF16 / AMX); running in float32")
    got = {u: np.array(m) for u, m in kaldiio.load_scp(f"{out}.layer-2.scp").items()}
    ref = {u: np.array(m) for u, m in kaldiio.load_scp(str(dumped / "layer-2" / "train" / "feats.scp")).items()}
    for u in ref:
        np.testing.assert_allclose(got[u], ref[u], atol=1e-5, rtol=0)
    assert "dtype" not in dump_lib.upstream_identity(ckpt, 0, precision.resolve_dtype("bfloat16", "cpu"))
