"""Bad-input matrix: each case gives a one-line error naming the file/line/utterance/key, a
non-zero exit, and leaves what was already written intact."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from s3prl.config import ConfigError
from s3prl.errors import UserError
from tests.reliability.conftest import TERA_TINY
from tests.reliability.harness import PY, REPO, cli, limits, tmp_leftovers, verb


def _one_line_error(r, *needles: str) -> None:
    assert r.returncode != 0
    assert r.stderr.strip(), "no message"
    assert "Traceback" not in r.stderr, r.stderr
    for n in needles:
        assert n in r.stderr, (n, r.stderr)


def _feats(data: Path, out: Path):
    from s3prl.bin.compute_feats import main
    return main([str(data), str(out)])


@pytest.fixture
def data(tmp_path, wav_dir):
    d = tmp_path / "data"
    shutil.copytree(wav_dir, d)
    wav = d / "wav.scp"
    wav.write_text(wav.read_text().replace(str(wav_dir), str(d)))
    return d


def _first(d: Path) -> tuple[str, Path]:
    utt, path = (d / "wav.scp").read_text().splitlines()[0].split(" ", 1)
    return utt, Path(path)


def test_missing_corpus_dir(tmp_path):
    from s3prl.bin.prepare_librispeech import main
    with pytest.raises(UserError, match="nonexistent"):
        main([str(tmp_path / "nonexistent"), "train-clean-100", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["corrupt", "empty_file", "zero_length", "stereo"])
def test_bad_audio_names_utterance_and_keeps_outputs(data, tmp_path, case):
    out = tmp_path / "feats" / "raw"
    out.parent.mkdir()
    for ext in (".ark", ".scp"):  # outputs of an earlier run must survive
        Path(f"{out}{ext}").write_text("old\n")
    utt, path = _first(data)
    if case == "corrupt":
        path.write_bytes(b"fLaC" + os.urandom(300))
    elif case == "empty_file":
        path.write_bytes(b"")
    elif case == "zero_length":
        sf.write(str(path), np.zeros(0, np.float32), 16000, subtype="PCM_16")
    else:
        sf.write(str(path), np.zeros((16000, 2), np.float32), 16000, subtype="PCM_16")
    with pytest.raises(UserError, match=utt):
        _feats(data, out)
    assert Path(f"{out}.ark").read_text() == "old\n" and Path(f"{out}.scp").read_text() == "old\n"
    assert tmp_leftovers(out.parent) == []


@pytest.mark.parametrize("rate", [8000, 44100])
def test_other_sample_rates_are_resampled(data, tmp_path, rate, capfd):
    utt, path = _first(data)
    sf.write(str(path), 0.1 * np.sin(np.arange(rate) / 5.0).astype(np.float32), rate, subtype="PCM_16")
    _feats(data, tmp_path / "raw")
    assert f"resampling audio at {rate} Hz" in capfd.readouterr().err
    n = dict(ln.split() for ln in (tmp_path / "raw.utt2num_frames").read_text().splitlines())
    assert int(n[utt]) == 98  # 1 s at 16 kHz: 1 + (16000 - 400) // 160


def test_resampling_refused_when_asked(data):
    from s3prl.data.audio import load_utterance
    from s3prl.data.kaldi_dir import DataDir
    utt, path = _first(data)
    sf.write(str(path), np.zeros(8000, np.float32), 8000, subtype="PCM_16")
    with pytest.raises(UserError, match=f"{utt}: sample rate 8000"):
        load_utterance(DataDir(data), utt, target_sr=16000, resample=False)


@pytest.mark.parametrize("case", ["unsorted", "duplicate", "utt2spk_missing"])
def test_bad_data_dir_tables(data, tmp_path, case):
    from s3prl.data.kaldi_dir import validate_data_dir
    lines = (data / "utt2spk").read_text().splitlines(keepends=True)
    if case == "unsorted":
        (data / "utt2spk").write_text("".join(lines[::-1]))
    elif case == "duplicate":
        (data / "utt2spk").write_text("".join(lines[:1] + lines))
    else:
        (data / "utt2spk").write_text("".join(lines[1:]))
        first_spk = lines[0].split()[1]
        sp = (data / "spk2utt").read_text().splitlines(keepends=True)
        (data / "spk2utt").write_text("".join(ln.replace(" " + lines[0].split()[0], "") if ln.startswith(first_spk + " ")
                                              else ln for ln in sp))
    with pytest.raises(UserError) as e:
        validate_data_dir(data, no_feats=True)
    msg = str(e.value)
    assert "\n" not in msg and ("utt2spk" in msg or "wav.scp" in msg or "spk2utt" in msg), msg
    assert "utt2spk:" in msg if case != "utt2spk_missing" else lines[0].split()[0] in msg, msg
    with pytest.raises(UserError):
        _feats(data, tmp_path / "raw")
    assert not (tmp_path / "raw.scp").exists()


def test_nan_in_features_refused(tmp_path, cpc_set):
    import kaldiio
    from s3prl.data.ark import ArkWriter
    bad = np.ones((5, 3), np.float32)
    bad[2, 1] = np.nan
    with pytest.raises(UserError, match="u1.*NaN"):
        with ArkWriter(tmp_path / "a.ark", tmp_path / "a.scp") as w:
            w.write("u1", bad)
    assert not (tmp_path / "a.ark").exists() and tmp_leftovers(tmp_path) == []
    # NaN read back from someone else's ark: training refuses it naming the utterance
    feats = tmp_path / "feats"
    shutil.copytree(cpc_set.feats, feats)
    mats = dict(kaldiio.load_scp(str(cpc_set.feats / "feats.scp")))
    victim = cpc_set.utts[0]
    mats = {k: np.array(v) for k, v in mats.items()}
    mats[victim][3, 0] = np.inf
    kaldiio.save_ark(str(feats / "raw.ark"), mats, scp=str(feats / "feats.scp"))
    r = cli(verb("train_downstream", "--config", REPO / "egs/librispeech/conf/downstream/phone_linear_tiny.yaml",
                 "--override", "runner.total_steps=2", "--labels", cpc_set.labels, "--feats", feats,
                 "--upstream", "fbank", "--results-md", "", "--device", "cpu", "--no-progress", tmp_path / "exp"))
    _one_line_error(r, victim)


def test_config_errors(tmp_path):
    from s3prl.config import load_config
    from s3prl.train.pretrain import PretrainConfig
    bad = tmp_path / "bad.yaml"
    bad.write_text("runner:\n  total_steps: [1,\n")
    with pytest.raises((ConfigError, UserError), match="bad.yaml"):
        load_config(PretrainConfig, bad, [])
    unk = tmp_path / "unk.yaml"
    unk.write_text(TERA_TINY.read_text().replace("runner:\n", "runner:\n  total_stepz: 3\n"))
    (tmp_path / "tera_base.yaml").write_text(TERA_TINY.with_name("tera_base.yaml").read_text())  # its base:
    with pytest.raises((ConfigError, UserError), match="unk.yaml: unknown key 'runner.total_stepz'"):
        load_config(PretrainConfig, unk, [])


def test_wrong_and_truncated_checkpoints(tmp_path, tiny_ckpt):
    import torch
    from s3prl.upstream.hub import load_upstream
    trunc = tmp_path / "trunc.ckpt"
    trunc.write_bytes(tiny_ckpt.read_bytes()[: tiny_ckpt.stat().st_size // 2])
    with pytest.raises(UserError, match="trunc.ckpt"):
        load_upstream(str(trunc))
    wrong = tmp_path / "wrong.ckpt"  # a downstream-like checkpoint: no upstream in it
    torch.save({"model": {"head.weight": torch.zeros(3, 4)}, "step": 5}, wrong)
    with pytest.raises(UserError, match="wrong.ckpt"):
        load_upstream(str(wrong))
    text = tmp_path / "text.ckpt"
    text.write_text("not a checkpoint\n")
    r = cli(verb("extract", "--upstream", text, "--layer", "last", tmp_path, tmp_path / "o"))
    _one_line_error(r, "text.ckpt")


def test_run_sh_unknown_option():
    r = cli(["bash", REPO / "egs/librispeech/run.sh", "--no-such-option", "1"])
    assert r.returncode != 0 and "no-such-option" in r.stderr and "Traceback" not in r.stderr


def test_nj_more_than_speakers(data, tmp_path):
    r = cli(["bash", REPO / "utils/compute_feats.sh", "--nj", "9", data, tmp_path / "log", tmp_path / "f"])
    _one_line_error(r, "--nj 9", "speakers (4)")
    assert not (data / "feats.scp").exists()


def test_output_not_writable(data, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    r = cli(verb("compute_feats", data, blocker / "sub" / "raw"))
    _one_line_error(r, str(blocker))
    assert blocker.read_text() == "x"


def test_disk_full_gives_clean_error(data, tmp_path):
    out = tmp_path / "feats" / "raw"
    r = cli(verb("compute_feats", data, out), preexec=limits(fsize=20000))
    _one_line_error(r, "raw")
    assert not Path(f"{out}.ark").exists() and not Path(f"{out}.scp").exists()
    assert tmp_leftovers(out.parent) == []


def _edited_ckpt(src: Path, dst: Path, edit) -> Path:
    import torch
    ck = torch.load(src, map_location="cpu", weights_only=True)
    edit(ck)
    torch.save(ck, dst)
    return dst


def test_checkpoint_wrong_shape_and_nan_weights(tmp_path, tiny_ckpt, wav_dir):
    """Named in one line (file, tensor, both shapes) by the hub, the extract verb and dump_feats.sh;
    NaN/Inf weights refused by the same check."""
    import torch
    from s3prl.upstream.hub import load_upstream
    key = "input_representations.spec_transform.weight"
    shape = list(torch.load(tiny_ckpt, weights_only=True)["Transformer"][key].shape)

    def widen(ck):
        w = ck["Transformer"][key]
        ck["Transformer"][key] = torch.cat([w, w[:, :1]], dim=1)

    def poison(ck):
        ck["Transformer"]["encoder.layer.0.output.dense.bias"][3] = float("nan")

    bad = _edited_ckpt(tiny_ckpt, tmp_path / "shape.ckpt", widen)
    want = f"{bad}: tensor 'Transformer.{key}' has shape [{shape[0]}, {shape[1] + 1}] but the model its config " \
           f"describes needs [{shape[0]}, {shape[1]}]"
    with pytest.raises(UserError) as e:
        load_upstream(str(bad))
    assert str(e.value) == want
    r = cli(verb("extract", "--upstream", bad, "--layer", "last", wav_dir, tmp_path / "o" / "raw"))
    _one_line_error(r, want)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
    r = cli(["bash", REPO / "utils" / "dump_feats.sh", "--nj", "1", "--layer", "last", bad, wav_dir, tmp_path / "dump"])
    _one_line_error(r, want)
    nan = _edited_ckpt(tiny_ckpt, tmp_path / "nan.ckpt", poison)
    with pytest.raises(UserError, match=r"nan.ckpt: tensor 'Transformer.encoder.layer.0.output.dense.bias' "
                                        r"holds NaN or Inf values$"):
        load_upstream(str(nan))


def test_truncated_checkpoint_on_downstream_resume(tmp_path, cpc_set):
    from tests.reliability.conftest import PHONE_TINY
    exp = tmp_path / "ds"
    cmd = verb("train_downstream", "--config", PHONE_TINY, "--override", "runner.total_steps=4", "--override",
               "runner.save_step=2", "--labels", cpc_set.labels, "--feats", cpc_set.feats, "--upstream", "fbank",
               "--results-md", "", "--device", "cpu", "--no-progress", exp)
    r = cli(cmd)
    assert r.returncode == 0, r.stderr
    newest = exp / "states-4.ckpt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a crash mid-copy, a full disk
    (exp / "results.json").unlink(missing_ok=True)
    r = cli(cmd)  # resumes from the newest checkpoint
    _one_line_error(r, f"{newest}: cannot read checkpoint (truncated or corrupt")
