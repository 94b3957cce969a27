"""Checkpoint round trips, historical S3PRL layouts, and safe loading."""
import argparse
import os

import pytest
import torch

from s3prl.errors import UserError
from s3prl.upstream.checkpoint import (find_checkpoints, load_checkpoint, load_upstream, prune_checkpoints,
                                       restore_objective, save_upstream_checkpoint)
from s3prl.upstream.config import APCConfig, TransformerConfig, UpstreamConfig
from s3prl.upstream.families import build_objective
from s3prl.upstream.transformer import TransformerModel

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
AUDIO = {"kaldi": {"feat_type": "fbank", "fbank": {"num_mel_bins": 6, "frame_length": 25.0, "frame_shift": 10.0,
                                                  "use_log_fbank": True}},
         "delta": {"order": 0, "win_length": 5}, "cmvn": {"use_cmvn": True}}


def _feats():
    torch.manual_seed(5)
    x = torch.randn(2, 12, 6)
    x[1, 9:] = 0
    return x, torch.tensor([12, 9])


def _save(tmp_path, cfg, name="states-10.ckpt", **kw):
    obj = build_objective(cfg, 6)
    opt = torch.optim.AdamW(obj.parameters(), lr=1e-3)
    out = obj(*_feats(), torch.Generator().manual_seed(0))
    out.loss.backward()
    opt.step()
    path = tmp_path / name
    save_upstream_checkpoint(path, objective=obj, optimizer_state=opt.state_dict(), scheduler_state=None, step=10,
                             runner_config={"total_steps": 100}, upstream_cfg=cfg,
                             audio=kw.get("audio", AUDIO), extra={"rng": torch.get_rng_state()})
    return obj, path


@pytest.mark.parametrize("model", ["tera", "aalbert", "apc"])
def test_round_trip_identical_outputs(tmp_path, model):
    cfg = UpstreamConfig(model=model, transformer=TransformerConfig(**TINY, share_layer=model == "aalbert"),
                         apc=APCConfig(hidden_size=8))
    audio = {"feat_type": "fbank", "feat_dim": 6} if model == "apc" else AUDIO
    obj, path = _save(tmp_path, cfg, audio=audio)
    ck = torch.load(path, weights_only=True)
    if model == "apc":
        assert set(ck["config"]["model"]["paras"]) == {"hidden_size", "num_layers", "dropout", "residual"}
        assert ck["config"]["data"]["audio"] == audio
    else:
        assert {"Transformer", "SpecHead", "Optimizer", "Step", "Config", "Upstream_Config"} <= set(ck)
        assert "transformer" not in ck["Config"]
        assert ck["Upstream_Config"]["task"] == {"sequence_length": 1500}
        assert ck["Upstream_Config"]["transformer"]["share_layer"] == (model == "aalbert")
    up = load_upstream(path, model)
    assert up.model_type == model and up.step == 10 and up.upstream_cfg == cfg and up.audio == audio
    x, lens = _feats()
    obj.eval()
    if model == "apc":
        a, b = obj.apc(x, lens)[1], up.model(x, lens)[1]
    else:
        a, b = obj.transformer(x, lens).hidden_states, up.model(x, lens).hidden_states
        assert torch.equal(up.spec_head(b[-1])[0], obj.spec_head(a[-1])[0])
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    # resume: weights go back into a fresh objective
    fresh = build_objective(cfg, 6)
    restore_objective(fresh, ck, path)
    assert all(torch.equal(p, q) for p, q in zip(fresh.state_dict().values(), obj.state_dict().values()))
    other = "apc" if model != "apc" else "tera"
    with pytest.raises(UserError, match="not " + other):
        load_upstream(path, other)


def test_refuses_non_plain_values(tmp_path):
    import numpy as np
    cfg = UpstreamConfig(model="tera", transformer=TransformerConfig(**TINY))
    obj = build_objective(cfg, 6)
    for bad in (np.float64(1.0), np.zeros(2), cfg):
        with pytest.raises(TypeError, match=r"ckpt\.Config\.a is a"):
            save_upstream_checkpoint(tmp_path / "x.ckpt", objective=obj, optimizer_state=None, scheduler_state=None,
                                     step=1, runner_config={"a": bad}, upstream_cfg=cfg, audio=AUDIO)
    assert not (tmp_path / "x.ckpt").exists()


def _legacy_model():
    torch.manual_seed(3)
    tcfg = TransformerConfig(**TINY, frame_stacking=2)
    return TransformerModel(tcfg, 6).eval()


def _legacy_section():
    return {"input_dim": 6, "downsample_rate": 2, "hidden_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 64, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02, "layer_norm_eps": "1e-12",
            "mask_proportion": 0.15, "mask_consecutive_min": 7, "mask_consecutive_max": 7,
            "mask_allow_overlap": True, "mask_bucket_ratio": 1.2, "mask_frequency": 8, "noise_proportion": 0.15,
            "prune_headids": "None", "share_layer": False, "max_input_length": 0}


def test_2020_settings_layout(tmp_path):
    m = _legacy_model()
    ck = {"Transformer": m.state_dict(), "SpecHead": {}, "Global_step": 1000,
          "Settings": {"Config": {"transformer": _legacy_section(), "runner": {"total_steps": 10}},
                       "Paras": argparse.Namespace(config="config/x.yaml", seed=1337)}}
    ck.pop("SpecHead")
    torch.save(ck, tmp_path / "states-1000.ckpt")
    up = load_upstream(tmp_path / "states-1000.ckpt", "tera")
    assert up.model_type == "tera" and up.step == 1000 and up.upstream_cfg.mask.mask_frequency == 8
    assert up.upstream_cfg.transformer.sequence_length == 0
    x, lens = torch.randn(2, 11, 6), torch.tensor([11, 7])
    assert all(torch.equal(a, b) for a, b in zip(m(x, lens).hidden_states, up.model(x, lens).hidden_states))


def test_pre_june_2020_mockingjay_key_with_gamma_beta(tmp_path):
    m = _legacy_model()
    sd = {}
    for k, v in m.state_dict().items():
        if "LayerNorm" in k:
            k = k.replace(".weight", ".gamma").replace(".bias", ".beta")
        sd[k] = v
    sec = dict(_legacy_section(), mask_frequency=0, noise_proportion=0.0)
    torch.save({"Mockingjay": sd, "Global_step": 5, "Settings": {"Config": {"mockingjay": sec}}},
               tmp_path / "mockingjay-5.ckpt")
    up = load_upstream(tmp_path / "mockingjay-5.ckpt")
    assert up.model_type == "mockingjay" and up.model.input_dim == 6
    x, lens = torch.randn(1, 8, 6), torch.tensor([8])
    assert torch.equal(m(x, lens).hidden_states[-1], up.model(x, lens).hidden_states[-1])


def test_today_legacy_config_layout(tmp_path):
    m = _legacy_model()
    torch.save({"Transformer": m.state_dict(), "Config": {"transformer": _legacy_section(),
                                                          "task": {"sequence_length": 7}}}, tmp_path / "a.ckpt")
    up = load_upstream(tmp_path / "a.ckpt")
    assert up.upstream_cfg.transformer.sequence_length == 7
    with pytest.raises(UserError, match="not aalbert"):
        load_upstream(tmp_path / "a.ckpt", "aalbert")


def test_pickled_side_effect_refused(tmp_path):
    target = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(target), "w"))

    torch.save({"Transformer": {}, "x": Evil()}, tmp_path / "evil.ckpt")
    with pytest.raises(UserError, match=r"evil.ckpt: refused: 'x' holds a pickled io.open"):
        load_upstream(tmp_path / "evil.ckpt")
    with pytest.raises(UserError, match="refused: checkpoint needs arbitrary unpickling"):
        load_checkpoint(tmp_path / "evil.ckpt")  # strict (resume, downstream): no stand-ins at all
    assert not target.exists()


def test_truncated_and_missing(tmp_path):
    cfg = UpstreamConfig(model="tera", transformer=TransformerConfig(**TINY))
    _, path = _save(tmp_path, cfg)
    data = path.read_bytes()
    bad = tmp_path / "trunc.ckpt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="trunc.ckpt: cannot read checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(tmp_path / "nope.ckpt")
    torch.save({"foo": 1}, tmp_path / "other.ckpt")
    with pytest.raises(UserError, match="not an upstream checkpoint"):
        load_upstream(tmp_path / "other.ckpt")


def test_find_and_prune(tmp_path):
    for s in (100, 20, 3000):
        (tmp_path / f"states-{s}.ckpt").write_bytes(b"x")
    (tmp_path / "states-x.ckpt").write_bytes(b"x")
    (tmp_path / "best_dev.ckpt").write_bytes(b"x")
    assert [s for s, _ in find_checkpoints(tmp_path)] == [20, 100, 3000]
    removed = prune_checkpoints(tmp_path, 2)
    assert [p.name for p in removed] == ["states-20.ckpt"]
    assert [s for s, _ in find_checkpoints(tmp_path)] == [100, 3000]
    assert (tmp_path / "best_dev.ckpt").exists()


_PAYLOAD_MODULE = '''
from pathlib import Path
HERE = Path(__file__).parent
(HERE / "imported").write_text("module imported")


def boom(path):
    Path(path).write_text("called")
'''

_WRITE_PAYLOADS = '''
import os, subprocess, sys, torch
sys.path.insert(0, sys.argv[1])
import s3prl_payload_mod
os.remove(os.path.join(sys.argv[1], "imported"))  # the import above was the writer's, not the reader's


class Call:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


src, dst = sys.argv[2], sys.argv[3:]
for i, where in enumerate(("Optimizer", "Transformer", "os.system")):
    ck = torch.load(src, weights_only=True)
    calls = [Call(s3prl_payload_mod.boom, os.path.join(sys.argv[1], "called")),
             Call(subprocess.check_call, ["touch", os.path.join(sys.argv[1], "subprocess")])]
    if where == "os.system":
        ck["Optimizer"] = {"state": {}, "param_groups": [{"schedule": Call(os.system, "touch " + os.path.join(sys.argv[1], "system"))}]}
    elif where == "Optimizer":
        ck["Optimizer"] = {"state": {}, "param_groups": [{"lr": 1e-3, "schedule": calls[0], "x": calls[1]}]}
        ck["Scheduler"] = calls[1]
    else:
        ck["Transformer"]["input_representations.spec_transform.weight"] = calls[0]
    torch.save(ck, dst[i])
'''


def test_payload_in_optimizer_section_is_never_run_and_in_model_section_refused(tmp_path):
    """Unknown globals where s3prl keeps scheduler objects (Optimizer, Scheduler) must not block
    loading and must never be imported or called; the same payload in the weights is refused."""
    import subprocess
    import sys

    cfg = UpstreamConfig(model="tera", transformer=TransformerConfig(**TINY))
    obj, path = _save(tmp_path, cfg)
    mod_dir = tmp_path / "mods"
    mod_dir.mkdir()
    (mod_dir / "s3prl_payload_mod.py").write_text(_PAYLOAD_MODULE)
    opt, model, system = tmp_path / "opt.ckpt", tmp_path / "model.ckpt", tmp_path / "system.ckpt"
    subprocess.run([sys.executable, "-c", _WRITE_PAYLOADS, str(mod_dir), str(path), str(opt), str(model), str(system)],
                   check=True)
    unsafe = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(opt)))
    # (pickle protocol 2 spells subprocess.check_call with its Python 2 name, commands.check_call)
    assert "s3prl_payload_mod.boom" in unsafe and any(u.endswith(".check_call") for u in unsafe)
    sys.path.insert(0, str(mod_dir))  # importable, so only not importing it keeps it from running
    try:
        up = load_upstream(opt)
        x, lens = _feats()
        obj.eval()
        assert all(torch.equal(a, b) for a, b in zip(obj.transformer(x, lens).hidden_states,
                                                     up.model(x, lens).hidden_states))
        with pytest.raises(UserError) as e:
            load_upstream(model)
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith(f"{model}: refused: 'Transformer.input_representations"
                                                  ".spec_transform.weight' holds a pickled s3prl_payload_mod.boom")
        with pytest.raises(UserError, match="opt.ckpt: refused: checkpoint needs arbitrary unpickling"):
            load_checkpoint(opt)  # strict readers (resume) still refuse it
        # torch's weights_only unpickler admits nothing from os/sys/posix, not even a stand-in
        with pytest.raises(UserError, match=r"system.ckpt: refused: .*posix.system whose module posix is blocked"):
            load_upstream(system)
    finally:
        sys.path.remove(str(mod_dir))
    assert "s3prl_payload_mod" not in sys.modules
    assert not any((mod_dir / f).exists() for f in ("imported", "called", "subprocess", "system"))


class _Schedule:
    """Stands for s3prl's `optimizers.WarmupLinearSchedule` in the optimizer state."""

    def __init__(self):
        self.warmup = 0.07

    def __setstate__(self, state):  # would run on a real unpickle
        raise AssertionError("ran")


@pytest.mark.parametrize("zipped", [True, False])
def test_scheduler_object_in_optimizer_state_both_file_formats(tmp_path, zipped):
    """The zip layout (torch >= 1.6) and the legacy one (S3PRL's 2020 files) are both scanned."""
    from s3prl.upstream.checkpoint import _Unloaded
    cfg = UpstreamConfig(model="tera", transformer=TransformerConfig(**TINY))
    obj, path = _save(tmp_path, cfg)
    ck = torch.load(path, weights_only=True)
    ck["Optimizer"]["param_groups"][0]["schedule"] = _Schedule()
    out = tmp_path / "sched.ckpt"
    torch.save(ck, out, _use_new_zipfile_serialization=zipped)
    raw = load_checkpoint(out, lenient=True)
    stand_in = raw["Optimizer"]["param_groups"][0]["schedule"]
    assert isinstance(stand_in, _Unloaded) and not isinstance(stand_in, _Schedule)
    assert stand_in.global_name == f"{__name__}._Schedule"
    up = load_upstream(out)
    x, lens = _feats()
    obj.eval()
    assert torch.equal(obj.transformer(x, lens).hidden_states[-1], up.model(x, lens).hidden_states[-1])
