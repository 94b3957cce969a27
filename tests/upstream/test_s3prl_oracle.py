"""Checkpoint interoperability with today's S3PRL, both directions, all four upstreams, checked against
the real thing: s3prl 0.4.18 from PyPI (tools/bench-venv, the `s3prl_oracle` fixture) runs in a
subprocess (tests/upstream/oracle_s3prl.py).

* ours -> S3PRL: checkpoints written by `save_upstream_checkpoint` from the shipped tiny presets
  (egs/librispeech/conf/*_tiny.yaml: features, frame stacking, chunk size as shipped; random
  seeded weights) go through s3prl's `mockingjay_local` / `tera_local` / `audio_albert_local` /
  `apc_local`; every hidden state must equal ours (max abs difference <= 1e-4).
* S3PRL -> ours: s3prl's own pre-training runner (`run_pretrain.py`'s Runner) trains each upstream a
  few steps and writes `states-*.ckpt` (its optimizer state pickles `optimizers.WarmupLinearSchedule`);
  `hub.load_upstream` must read it without importing or running anything and give s3prl's
  hidden states.

Speech: two utterances synthesized by espeak-ng (a numpy vowel-like signal when espeak-ng is
absent), 2-4 s with a -80 dBFS noise floor (see `_speech`), single-utterance batches; the 2- and 3-s ones exceed the 50-frame chunks of the tiny
transformer presets, so chunking (S3PRL: `torch.chunk`, positions restarting) is compared too.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import REPO_ROOT

CONF = REPO_ROOT / "egs" / "librispeech" / "conf"
ORACLE = Path(__file__).with_name("oracle_s3prl.py")
TOL = 1e-4
OURS = {"mockingjay": "mockingjay_local", "tera": "tera_local", "aalbert": "audio_albert_local", "apc": "apc_local"}
S3PRL_PRETRAIN = {"mockingjay": "mockingjay", "tera": "tera", "aalbert": "audio_albert", "apc": "apc"}
TEXTS = ("Please call Stella and ask her to bring these things.", "Author of the danger trail.")


def _speech(tmp: Path) -> list[np.ndarray]:
    """Two 16 kHz float32 utterances of synthetic speech."""
    from scipy.signal import resample_poly
    import soundfile as sf

    out = []
    for i, text in enumerate(TEXTS):
        if shutil.which("espeak-ng"):
            wav = tmp / f"u{i}.wav"
            subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), text], check=True,
                           capture_output=True)
            x, sr = sf.read(str(wav), dtype="float32")
            x = resample_poly(x, 16000, sr).astype(np.float32)
        else:  # harmonics of a gliding f0 under two formants, with pauses
            rng = np.random.default_rng(i)
            t = np.arange(int(16000 * (1.5 + i))) / 16000
            f0 = 110 + 30 * np.sin(2 * np.pi * 0.7 * t)
            ph = 2 * np.pi * np.cumsum(f0) / 16000
            x = sum(np.sin(k * ph) * (np.exp(-((k * f0 - 700) / 300) ** 2) + 0.5 * np.exp(-((k * f0 - 1200) / 400) ** 2))
                    for k in range(1, 30))
            x = (0.3 * x * (np.sin(2 * np.pi * 2 * t) > -0.3) + 0.003 * rng.standard_normal(t.size)).astype(np.float32)
        x = x / max(1e-3, float(np.abs(x).max())) * 0.5
        # A recording's background: low-frequency (brown) room noise at -40 dBFS. TTS output is
        # band-limited with runs of exact digital zeros, where mel bins fall under the log floor
        # (float epsilon): Kaldi and we apply it to int16-scaled energies, S3PRL's extracter
        # (torchaudio kaldi.fbank on [-1, 1] floats) to unscaled ones, so such bins differ after
        # CMVN (known divergence, 0.1-0.7 in the states; see s3prl/features/kaldi.py).
        rng = np.random.default_rng(10 + i)
        b = np.cumsum(rng.standard_normal(x.size))
        b -= np.convolve(b, np.ones(801) / 801, "same")
        x = x + 1e-2 * b / b.std()
        out.append(x.astype(np.float32))
    return out


def _our_checkpoint(model: str, path: Path) -> Path:
    """The shipped tiny preset, seeded random weights, written as pre-training writes it."""
    from s3prl.config import load_config
    from s3prl.features import feature_dim
    from s3prl.train.pretrain import PretrainConfig, audio_section
    from s3prl.upstream.checkpoint import save_upstream_checkpoint
    from s3prl.upstream.families import build_objective

    cfg = load_config(PretrainConfig, CONF / f"{model}_tiny.yaml")
    dim = feature_dim(cfg.features)
    torch.manual_seed(1)
    obj = build_objective(cfg.upstream, dim)
    save_upstream_checkpoint(path, objective=obj, optimizer_state=None, scheduler_state=None, step=1,
                             runner_config={}, upstream_cfg=cfg.upstream, audio=audio_section(cfg, dim))
    return path


def _s3prl_pretrain_job(model: str, feats: list[str], expdir: Path) -> dict:
    """A tiny config in s3prl's own layout for its pre-training runner."""
    if model == "apc":
        upstream = {"data": {"audio": {"feat_type": "fbank", "feat_dim": 80, "cmvn": True,
                                       "frame_length": 25, "frame_shift": 10}},
                    "model": {"paras": {"hidden_size": 32, "num_layers": 3, "dropout": 0.1, "residual": True}},
                    "task": {"n_future": 3, "sequence_length": 0}}
        optimizer = {"name": "TorchOptim", "torch_optim_name": "Adam", "lr": 1e-3}
    else:
        tr = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
              "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
              "initializer_range": 0.02, "layer_norm_eps": 1e-12, "share_layer": model == "aalbert",
              "pre_layer_norm": False, "input_dim": 80}
        task = {"loss": "L1", "sequence_length": 0, "position_encoding_size": 32, "mask_proportion": 0.15,
                "mask_consecutive_min": 7, "mask_consecutive_max": 7, "mask_allow_overlap": True,
                "mask_bucket_ratio": 1.5, "mask_frequency": 0.2 if model == "tera" else 0,
                "noise_proportion": 0.1 if model == "tera" else 0.0}
        audio = {"kaldi": {"feat_type": "fbank", "fbank": {"frame_length": 25.0, "frame_shift": 10.0,
                                                           "num_mel_bins": 80, "use_log_fbank": True}},
                 "delta": {"order": 0, "win_length": 5}, "cmvn": {"use_cmvn": True}}
        upstream = {"transformer": tr, "task": task, "audio": audio}
        # run_pretrain's mockingjay/tera/audio_albert configs: AdamW with a warm-up schedule object
        optimizer = {"name": "AdamW_with_schedule", "lr": 2e-4, "warmup_proportion": 0.07}
    return {"pretrain": S3PRL_PRETRAIN[model], "upstream_config": upstream, "feats": feats, "steps": 4,
            "expdir": str(expdir), "optimizer": optimizer}


@pytest.fixture(scope="module")
def oracle(s3prl_oracle, tmp_path_factory):
    """Run every s3prl job in one subprocess; -> dict with wavs, checkpoints and s3prl's states."""
    tmp = tmp_path_factory.mktemp("oracle")
    wavs = _speech(tmp)
    np.savez(tmp / "wavs.npz", **{f"w{i}": w for i, w in enumerate(wavs)})
    rng = np.random.default_rng(0)
    feats = []
    for i in range(4):
        f = tmp / "feats" / f"f{i}.npy"
        f.parent.mkdir(exist_ok=True)
        np.save(f, rng.standard_normal((60 + 10 * i, 80)).astype(np.float32))
        feats.append(str(f))
    jobs, ours, theirs = [], {}, {}
    for model in OURS:
        ours[model] = _our_checkpoint(model, tmp / "ours" / model / "states-1.ckpt")
        jobs.append({"hub": OURS[model], "ckpt": str(ours[model]), "key": f"ours_{model}"})
        expdir = tmp / "s3prl" / model
        jobs.append(_s3prl_pretrain_job(model, feats, expdir))
        theirs[model] = expdir / "states-3.ckpt"  # save_step = steps - 1
        jobs.append({"hub": OURS[model], "ckpt": str(theirs[model]), "key": f"s3prl_{model}"})
    (tmp / "jobs.json").write_text(json.dumps(jobs))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([str(s3prl_oracle), str(ORACLE), "--jobs", str(tmp / "jobs.json"),
                           "--wavs", str(tmp / "wavs.npz"), "--out", str(tmp / "states.npz")],
                          cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    states = np.load(tmp / "states.npz")
    return {"wavs": wavs, "ours": ours, "theirs": theirs, "states": {k: states[k] for k in states.files}}


def _compare(up, wavs, states, key):
    n_ref = len([k for k in states if k.startswith(f"{key}_u0_l")])
    assert n_ref == up.num_hidden_states, (n_ref, up.num_hidden_states)
    worst = 0.0
    for i, w in enumerate(wavs):
        out = up([torch.from_numpy(w)])
        for k, h in enumerate(out.hidden_states):
            ref = states[f"{key}_u{i}_l{k}"]
            assert tuple(h.shape[1:]) == ref.shape, (key, i, k, tuple(h.shape), ref.shape)
            worst = max(worst, float(np.abs(h[0].numpy() - ref).max()))
    assert worst <= TOL, f"{key}: max |ours - s3prl 0.4.18| = {worst:.3g}"
    return worst


@pytest.mark.parametrize("model", list(OURS))
def test_our_checkpoints_give_the_same_states_in_s3prl(oracle, model):
    from s3prl.upstream.hub import load_upstream

    up = load_upstream(str(oracle["ours"][model]))
    assert up.model_type == model
    if model != "apc":
        assert up.frame_stacking == 1 and up.sequence_length == 50  # the shipped tiny presets, chunked
        assert max(len(w) for w in oracle["wavs"]) // 160 > 2 * up.sequence_length
    _compare(up, oracle["wavs"], oracle["states"], f"ours_{model}")


@pytest.mark.parametrize("model", list(OURS))
def test_s3prl_pretrained_checkpoints_load_and_give_the_same_states(oracle, model):
    from s3prl.upstream.hub import load_upstream

    path = oracle["theirs"][model]
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    assert "argparse.Namespace" in unsafe  # run_pretrain's Args
    if model != "apc":
        # the global that made `load_upstream` refuse these files
        assert "optimizers.WarmupLinearSchedule" in unsafe
    up = load_upstream(str(path))
    assert up.model_type == model and up.step == 2  # s3prl's runner stores the steps done before this one
    assert "optimizers" not in sys.modules  # named in the file, never imported
    _compare(up, oracle["wavs"], oracle["states"], f"s3prl_{model}")


def test_apc_window_is_what_s3prl_reads(tmp_path):
    """No window key = S3PRL's hamming; our format-1 APC files (no key, povey) keep povey."""
    from s3prl.features.config import FeatureConfig
    from s3prl.upstream.hub import load_upstream

    assert FeatureConfig.from_apc_audio({"feat_type": "fbank", "feat_dim": 80}).window_type == "hamming"
    ham = FeatureConfig(window_type="hamming", per_utt_cmvn=True)
    assert "window_type" not in ham.to_apc_audio() and ham.apc_s3prl_incompatibility() is None
    povey = FeatureConfig(per_utt_cmvn=True)
    assert povey.to_apc_audio()["window_type"] == "povey"
    assert "hamming" in povey.apc_s3prl_incompatibility()
    path = _our_checkpoint("apc", tmp_path / "states-1.ckpt")
    assert load_upstream(str(path)).feature_config.window_type == "hamming"
    ck = torch.load(path, weights_only=True)
    ck["S3PRL_Recipes"]["format"] = 1
    torch.save(ck, tmp_path / "old.ckpt")
    assert load_upstream(str(tmp_path / "old.ckpt")).feature_config.window_type == "povey"


def test_files_s3prl_cannot_read_are_announced_at_save_time(tmp_path, caplog):
    from s3prl.features.config import FeatureConfig
    from s3prl.upstream.checkpoint import save_upstream_checkpoint
    from s3prl.upstream.config import APCConfig, TransformerConfig, UpstreamConfig
    from s3prl.upstream.families import build_objective

    tiny = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)
    cases = [(UpstreamConfig(model="aalbert", transformer=TransformerConfig(**tiny, share_layer=True, frame_stacking=3)),
              FeatureConfig().to_s3prl_audio(), "stacks 3 frames"),
             (UpstreamConfig(model="apc", apc=APCConfig(hidden_size=8)), FeatureConfig().to_apc_audio(),
              "hamming window, not povey"),
             (UpstreamConfig(model="aalbert", transformer=TransformerConfig(**tiny, share_layer=True)),
              FeatureConfig().to_s3prl_audio(), None),
             (UpstreamConfig(model="apc", apc=APCConfig(hidden_size=8)),
              FeatureConfig(window_type="hamming").to_apc_audio(), None)]
    for i, (cfg, audio, why) in enumerate(cases):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="s3prl.upstream.checkpoint"):
            save_upstream_checkpoint(tmp_path / f"{i}.ckpt", objective=build_objective(cfg, 80), optimizer_state=None,
                                     scheduler_state=None, step=1, runner_config={}, upstream_cfg=cfg, audio=audio)
        msgs = [r.getMessage() for r in caplog.records]
        if why is None:
            assert not msgs, msgs
        else:
            assert len(msgs) == 1 and why in msgs[0] and "today's S3PRL cannot" in msgs[0], msgs
