"""PyTorch-Kaldi hand-off: the cfg writer, the alignment frame-count check and the S3PRLUpstream
architecture, exercised the way PyTorch-Kaldi uses them (configparser, string options, (T, B, D),
its forward_model's `.view(max_len * batch, -1)`), and every generated cfg checked against a table
of PyTorch-Kaldi's proto files with its check_field rules (PK_PROTO below). The architecture fed
what the cfg's fea_opts chain makes of plain fbank dumps equals the hub on the audio
(`run_fea_opts` plays the chain's Kaldi commands), and n_chunks never leaves a chunk list empty."""
from __future__ import annotations

import configparser
import gzip
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch

from s3prl.bin import check_alignments as check_cli
from s3prl.bin import make_pytorch_kaldi_cfg as cfg_cli
from s3prl.config import load_config
from s3prl.data.alignments import compare_lengths, read_alignment_lengths, write_alignments
from s3prl.downstream.pk_arch import S3PRLUpstream
from s3prl.downstream.pytorch_kaldi import PK_ARCH_PROTO, PyTorchKaldiConfig
from s3prl.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
DIM = 12
FRAMES = {"spka-u1": 30, "spka-u2": 25, "spkb-u1": 41}


def make_feats_dir(d: Path, frames: dict[str, int] = FRAMES, dim: int = DIM,
                   feats: dict[str, np.ndarray] | None = None) -> Path:
    """A dumped-representation data dir: feats.scp (absolute), cmvn.scp per speaker, utt2spk,
    spk2utt, utt2num_frames, text. `feats` (utt -> matrix) replaces the random features."""
    d.mkdir(parents=True)
    rng = np.random.default_rng(1)
    if feats is None:
        feats = {u: rng.standard_normal((n, dim)).astype(np.float32) for u, n in sorted(frames.items())}
    else:
        feats = dict(sorted(feats.items()))
        frames = {u: m.shape[0] for u, m in feats.items()}
        dim = next(iter(feats.values())).shape[1]
    kaldiio.save_ark(str(d / "feats.ark"), feats, scp=str(d / "feats.scp"))
    utt2spk = {u: u.split("-")[0] for u in feats}
    stats = {}
    for spk in sorted(set(utt2spk.values())):
        m = np.concatenate([feats[u] for u in feats if utt2spk[u] == spk])
        s = np.zeros((2, dim + 1))
        s[0, :dim], s[0, dim], s[1, :dim] = m.sum(0), len(m), (m.astype(np.float64) ** 2).sum(0)
        stats[spk] = s
    kaldiio.save_ark(str(d / "cmvn.ark"), stats, scp=str(d / "cmvn.scp"))
    (d / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in utt2spk.items()))
    spk2utt: dict[str, list[str]] = {}
    for u, s in utt2spk.items():
        spk2utt.setdefault(s, []).append(u)
    (d / "spk2utt").write_text("".join(f"{s} {' '.join(us)}\n" for s, us in spk2utt.items()))
    (d / "utt2num_frames").write_text("".join(f"{u} {n}\n" for u, n in sorted(frames.items())))
    (d / "text").write_text("".join(f"{u} sil ah sil\n" for u in sorted(frames)))
    # The sclite reference pair of the TIMIT scorer (s3prl.data.timit writes the real ones).
    (d / "stm").write_text("".join(f"{u} 1 {u.split('-')[0]} 0.0 1.000000 <O,M> sil ah sil\n"
                                   for u in sorted(frames)))
    (d / "glm").write_text(";; empty.glm\n")
    return d


def make_ali_dir(d: Path, lengths: dict[str, int]) -> Path:
    """A Kaldi alignment dir: final.mdl, num_jobs and two gzip'ed int32-vector archives."""
    d.mkdir(parents=True)
    (d / "final.mdl").write_bytes(b"\0Bfake transition model")
    keys = sorted(lengths)
    half = len(keys) // 2 or 1
    for job, part in ((1, keys[:half]), (2, keys[half:])):
        write_alignments(d / f"ali.{job}.gz", {k: np.arange(lengths[k]) % 7 + 1 for k in part})
    (d / "num_jobs").write_text("2\n")
    return d


def make_graph_dir(d: Path) -> Path:
    d.mkdir(parents=True)
    (d / "HCLG.fst").write_bytes(b"fst")
    (d / "words.txt").write_text("<eps> 0\nsil 1\n")
    return d


def _script(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def make_pk_root(d: Path) -> Path:
    """The parts of a PyTorch-Kaldi checkout the cfg names (for the path-existence check), with
    its TIMIT scorer kaldi_decoding_scripts/local/score.sh."""
    (d / "proto").mkdir(parents=True)
    for name in ("global", "global_chunk", "MLP", "model", "decoding"):
        (d / "proto" / f"{name}.proto").write_text("[proto]\n")
    _script(d / "kaldi_decoding_scripts" / "local" / "score.sh")
    return d


def make_kaldi_root(d: Path) -> Path:
    """A Kaldi checkout as far as the LibriSpeech config's scorer goes."""
    _script(d / "egs" / "librispeech" / "s5" / "local" / "score.sh")
    return d


@pytest.fixture()
def setup(tmp_path):
    dirs = {}
    for s in ("train", "dev", "test"):
        dirs[f"{s}_feats"] = make_feats_dir(tmp_path / "dump" / "tera" / "layer" / s)
        dirs[f"ali_{s}"] = make_ali_dir(tmp_path / "exp" / f"tri4b_ali_{s}", FRAMES)
    dirs["graph"] = make_graph_dir(tmp_path / "exp" / "tri4b" / "graph_tgsmall")
    dirs["pk"] = make_pk_root(tmp_path / "tools" / "pytorch-kaldi")
    dirs["kaldi"] = make_kaldi_root(tmp_path / "kaldi")
    return tmp_path, dirs


def _args(dirs, out, extra=(), kaldi=True):
    a = []
    for s in ("train", "dev", "test"):
        a += [f"--{s}-feats", str(dirs[f"{s}_feats"]), f"--ali-{s}", str(dirs[f"ali_{s}"])]
    a += ["--graph", str(dirs["graph"]), "--pytorch-kaldi-root", str(dirs["pk"])]
    a += ["--kaldi-root", str(dirs["kaldi"])] if kaldi else []
    return a + [*extra, str(out)]


def _run(argv):
    with pytest.raises(SystemExit) as e:
        from s3prl.errors import cli_main
        cli_main(cfg_cli.main, argv)
    return e.value.code


def _read(path: Path) -> configparser.ConfigParser:
    c = configparser.ConfigParser()  # PyTorch-Kaldi's own reader (default interpolation)
    c.read(path)
    return c


REQUIRED = {
    "cfg_proto": ["cfg_proto", "cfg_proto_chunk"],
    "exp": ["cmd", "run_nn_script", "out_folder", "seed", "use_cuda", "multi_gpu", "save_gpumem", "n_epochs_tr"],
    "data_use": ["train_with", "valid_with", "forward_with"],
    "batches": ["batch_size_train", "max_seq_length_train", "increase_seq_length_train", "start_seq_len_train",
                "multply_factor_seq_len_train", "batch_size_valid", "max_seq_length_valid"],
    "model": ["model_proto", "model"],
    "forward": ["forward_out", "normalize_posteriors", "normalize_with_counts_from", "save_out_file",
                "require_decoding"],
    "decoding": ["decoding_script_folder", "decoding_script", "decoding_proto", "min_active", "max_active",
                 "max_mem", "beam", "latbeam", "acwt", "max_arcs", "skip_scoring", "scoring_script",
                 "scoring_opts", "norm_vars"],
}
ARCH_FIELDS = ["arch_name", "arch_proto", "arch_library", "arch_class", "arch_pretrain_file", "arch_freeze",
               "arch_seq_model", "arch_lr", "arch_halving_factor", "arch_improvement_threshold", "arch_opt"]


def _groups(value: str) -> list[dict[str, str]]:
    """Split a multi-line fea/lab value into its `key=value` groups (blank line between groups)."""
    groups, cur = [], {}
    for line in value.split("\n"):
        line = line.strip()
        if not line:
            if cur:
                groups.append(cur)
            cur = {}
            continue
        k, v = line.split("=", 1)
        if k in cur:
            groups.append(cur)
            cur = {}
        cur[k] = v
    if cur:
        groups.append(cur)
    return groups


def test_cfg_has_every_section_field_and_existing_path(setup):
    tmp, dirs = setup
    out = tmp / "exp" / "pk_tera" / "pytorch_kaldi.cfg"
    conf = ROOT / "egs" / "librispeech" / "conf" / "pytorch_kaldi.yaml"
    assert _run(["--config", str(conf), *_args(dirs, out, ["--check-frames"])]) == 0
    c = _read(out)
    for sec, keys in REQUIRED.items():
        assert sec in c, sec
        for k in keys:
            assert k in c[sec], f"[{sec}] {k}"
    assert c["exp"]["out_folder"] == str((tmp / "exp" / "pk_tera").resolve())
    cfg = load_config(PyTorchKaldiConfig, conf)
    names = [cfg.data.train_name, cfg.data.dev_name, cfg.data.test_name]
    assert [c["data_use"][k] for k in ("train_with", "valid_with", "forward_with")] == names
    paths = [c["cfg_proto"]["cfg_proto"], c["cfg_proto"]["cfg_proto_chunk"], c["model"]["model_proto"],
             c["decoding"]["decoding_proto"], c["decoding"]["decoding_script_folder"]]
    for i, s in enumerate(("train", "dev", "test"), 1):
        sec = c[f"dataset{i}"]
        assert sec["data_name"] == names[i - 1] and int(sec["n_chunks"]) >= 1
        (fea,) = _groups(sec["fea"])
        feats_dir = dirs[f"{s}_feats"].resolve()
        assert fea["fea_name"] == cfg.features.name and fea["fea_name"].isalnum()
        assert fea["fea_lst"] == str(feats_dir / "feats.scp")
        assert fea["fea_opts"] == (f"apply-cmvn --utt2spk=ark:{feats_dir}/utt2spk scp:{feats_dir}/cmvn.scp "
                                   f"ark:- ark:- | add-deltas --delta-order=0 ark:- ark:- |")
        assert (fea["cw_left"], fea["cw_right"]) == (str(cfg.features.cw_left), str(cfg.features.cw_right))
        labs = _groups(sec["lab"])
        assert labs[0]["lab_name"] == "lab_cd" and labs[0]["lab_opts"] == "ali-to-pdf"
        assert labs[0]["lab_count_file"] == "auto"
        assert labs[0]["lab_folder"] == str(dirs[f"ali_{s}"].resolve())
        assert labs[0]["lab_graph"] == str(dirs["graph"].resolve())
        assert labs[0]["lab_data_folder"].rstrip("/") == str(feats_dir)
        paths += [fea["fea_lst"], labs[0]["lab_folder"], labs[0]["lab_data_folder"], labs[0]["lab_graph"]]
        paths += [p.split(":", 1)[1] for p in fea["fea_opts"].split() if p.startswith(("ark:/", "scp:/"))]
    archs = [s for s in c.sections() if s.startswith("architecture")]
    assert archs == [f"architecture{i}" for i in range(1, len(archs) + 1)]
    for a in archs:
        for k in ARCH_FIELDS:
            assert k in c[a], f"[{a}] {k}"
        paths.append(c[a]["arch_proto"])
    assert c[archs[-1]]["dnn_lay"] == "N_out_lab_cd" and c[archs[-1]]["dnn_act"] == "softmax"
    model = [ln.strip() for ln in c["model"]["model"].split("\n") if ln.strip()]
    assert model[0] == f"out_dnn1=compute(MLP_layers1,{cfg.features.name})"
    assert "loss_cd=cost_nll(out_cd,lab_cd)" in model and model[-1] == "err_final=cost_err(out_cd,lab_cd)"
    assert any(m.startswith("loss_final=") for m in model)
    assert c["forward"]["forward_out"] == "out_cd" and c["forward"]["normalize_with_counts_from"] == "lab_cd"
    for p in paths:
        assert Path(p).is_absolute() and Path(p).exists(), p
    # A second identical run leaves the file alone.
    mtime = out.stat().st_mtime_ns
    assert _run(["--config", str(conf), *_args(dirs, out)]) == 0
    assert out.stat().st_mtime_ns == mtime


def test_cfg_options_from_yaml_and_overrides(setup):
    tmp, dirs = setup
    out = tmp / "x.cfg"
    conf = ROOT / "egs" / "timit" / "conf" / "pytorch_kaldi.yaml"
    ov = ["--override", "features.norm_vars=true", "--override", "features.delta_order=2",
          "--override", "features.cw_left=3", "--override", "labels.mono=true", "--override", "exp.n_epochs_tr=3"]
    assert _run(["--config", str(conf), *ov, *_args(dirs, out)]) == 0
    c = _read(out)
    assert c["exp"]["n_epochs_tr"] == "3"
    (fea,) = _groups(c["dataset1"]["fea"])
    assert fea["fea_opts"].startswith("apply-cmvn --norm-vars=true --utt2spk=ark:")
    assert "add-deltas --delta-order=2 ark:- ark:- |" in fea["fea_opts"] and fea["cw_left"] == "3"
    labs = _groups(c["dataset2"]["lab"])
    assert [g["lab_name"] for g in labs] == ["lab_cd", "lab_mono"]
    assert labs[1]["lab_opts"] == "ali-to-phones --per-frame=true" and labs[1]["lab_count_file"] == "none"
    model = c["model"]["model"]
    assert "loss_final=sum(loss_cd,loss_mono_w)" in model and "cost_nll(out_mono,lab_mono)" in model


@pytest.mark.parametrize("missing,what", [("ali_dev", "alignment directory does not exist"),
                                          ("graph", "decoding graph directory does not exist")])
def test_missing_dirs_are_one_line_errors(setup, missing, what, capsys):
    tmp, dirs = setup
    import shutil
    shutil.rmtree(dirs[missing])
    assert _run(_args(dirs, tmp / "x.cfg")) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(dirs[missing].resolve()) in err and what in err
    assert not (tmp / "x.cfg").exists()


def test_bad_config_key_and_feature_name(setup, tmp_path, capsys):
    _, dirs = setup
    bad = tmp_path / "bad.yaml"
    bad.write_text("features:\n  name: fb_ank\n")
    assert _run(["--config", str(bad), *_args(dirs, tmp_path / "x.cfg")]) == 1
    assert "fb_ank" in capsys.readouterr().err
    bad.write_text("exp:\n  n_epoch: 3\n")
    assert _run(["--config", str(bad), *_args(dirs, tmp_path / "x.cfg")]) == 1
    assert "exp.n_epoch" in capsys.readouterr().err


# ---------------------------------------------------------------- alignment frame counts
def test_alignment_archives_round_trip(tmp_path):
    d = make_ali_dir(tmp_path / "ali", FRAMES)
    assert read_alignment_lengths(d) == FRAMES
    # Independent reader: gunzip + kaldiio, int32 vectors with Kaldi's per-element size byte.
    with gzip.open(d / "ali.1.gz", "rb") as f:
        raw = f.read()
    assert raw.startswith(b"spka-u1 \0B\x04") and len(raw) == len(b"spka-u1 \0B") + 5 + 5 * 30
    vecs = dict(kaldiio.load_ark(gzip.open(d / "ali.1.gz", "rb")))
    assert vecs["spka-u1"].dtype == np.int32 and vecs["spka-u1"][:8].tolist() == [1, 2, 3, 4, 5, 6, 7, 1]


@pytest.mark.parametrize("delta,ok", [(0, True), (1, True), (-1, True), (3, False)])
def test_check_alignments_tolerance(tmp_path, delta, ok):
    feats = make_feats_dir(tmp_path / "feats")
    ali = dict(FRAMES)
    ali["spkb-u1"] += delta
    make_ali_dir(tmp_path / "ali", ali)
    if ok:
        assert check_cli.check_alignments(feats, tmp_path / "ali") == {"utterances": 3, "missing": 0}
    else:
        with pytest.raises(UserError, match=r"utterance spkb-u1: 41 feature frames .* but 44 alignment frames"):
            check_cli.check_alignments(feats, tmp_path / "ali")


def test_check_alignments_missing_and_cli(tmp_path):
    feats = make_feats_dir(tmp_path / "feats")
    make_ali_dir(tmp_path / "ali", {k: v for k, v in FRAMES.items() if k != "spka-u2"})
    with pytest.raises(UserError, match="utterance spka-u2: has features .* but no alignment"):
        check_cli.check_alignments(feats, tmp_path / "ali")
    assert check_cli.check_alignments(feats, tmp_path / "ali", allow_missing=True)["missing"] == 1
    with pytest.raises(UserError, match="aligned in .* but has no features"):
        compare_lengths({"a-1": 3}, {"a-1": 3, "a-2": 4})
    r = subprocess.run([sys.executable, "-m", "s3prl.bin.check_alignments", str(feats), str(tmp_path / "ali")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "spka-u2" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "s3prl.bin.check_alignments", str(feats), str(tmp_path / "no")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "alignment directory does not exist" in r.stderr
    # Without utt2num_frames the counts come from feats.scp itself.
    (feats / "utt2num_frames").unlink()
    make_ali_dir(tmp_path / "ali2", FRAMES)
    assert check_cli.check_alignments(feats, tmp_path / "ali2")["utterances"] == 3


# ---------------------------------------------------------------- the PyTorch-Kaldi architecture
@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    from s3prl.upstream.checkpoint import save_upstream_checkpoint
    from s3prl.upstream.config import TransformerConfig, UpstreamConfig
    from s3prl.upstream.objectives import MaskedReconstruction

    torch.manual_seed(0)
    cfg = UpstreamConfig(model="tera", transformer=TransformerConfig(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32))
    obj = MaskedReconstruction(cfg, DIM)
    path = tmp_path_factory.mktemp("ckpt") / "states-1.ckpt"
    # An empty audio section marks a checkpoint trained on external (Kaldi feats.scp) features.
    save_upstream_checkpoint(path, objective=obj, optimizer_state=None, scheduler_state=None, step=1,
                             runner_config={}, upstream_cfg=cfg, audio={})
    return path


def _opts(ckpt, **kw):
    o = {"upstream_ckpt": str(ckpt), "load_pretrain": "True", "no_grad": "True", "dropout": "default",
         "weighted_sum": "False", "select_layer": "-1", "spec_aug": "False", "spec_aug_prev": "True",
         "permute_input": "True", "use_cuda": "False", "to_do": "train"}
    o.update({k: str(v) for k, v in kw.items()})
    return o


def _batch(T=9, B=3, lens=(9, 6, 4)):
    torch.manual_seed(3)
    x = torch.randn(T, B, DIM)
    for b, n in enumerate(lens):
        x[n:, b] = 0  # PyTorch-Kaldi zero-pads shorter sequences
    return x


def test_arch_frozen_time_major(tiny_ckpt):
    from s3prl.upstream.hub import load_upstream

    m = S3PRLUpstream(_opts(tiny_ckpt), DIM)
    assert m.out_dim == 16
    x = _batch()
    y = m(x)
    assert y.shape == (9, 3, 16)
    assert torch.all(y[6:, 1] == 0) and torch.all(y[4:, 2] == 0) and y[:4, 2].abs().sum() > 0
    # Same numbers as the hub on the unpadded sequence: the last hidden state.
    ref = load_upstream(tiny_ckpt).forward_features(x[:6, 1].unsqueeze(0), torch.tensor([6]))
    torch.testing.assert_close(y[:6, 1], ref.last_hidden_state[0], rtol=1e-5, atol=1e-5)
    # Frozen: no parameter takes a gradient, and none is trainable.
    y.sum().backward() if y.requires_grad else None
    assert all(not p.requires_grad for p in m.parameters())
    assert all(p.grad is None for p in m.parameters())


def test_arch_fine_tune_weighted_sum_batch_major(tiny_ckpt):
    m = S3PRLUpstream(_opts(tiny_ckpt, no_grad=False, weighted_sum=True, dropout=0.3, permute_input=False), DIM)
    m.train()
    drops = [mod.p for mod in m.upstream.modules() if isinstance(mod, torch.nn.Dropout)]
    assert drops and all(p == 0.3 for p in drops)
    x = _batch().transpose(0, 1).contiguous()  # (B, T, D)
    y = m(x)
    assert y.shape == (3, 9, 16)
    y.pow(2).sum().backward()
    up = [p for p in m.upstream.parameters()]
    assert up and all(p.grad is not None for p in up)
    assert sum(p.grad.abs().sum() for p in up) > 0
    assert m.featurizer.weights.grad is not None and m.featurizer.weights.numel() == 3


def test_arch_frozen_weighted_sum_trains_only_weights_and_select_layer(tiny_ckpt):
    m = S3PRLUpstream(_opts(tiny_ckpt, weighted_sum=True), DIM)
    m(_batch()).sum().backward()
    trainable = [n for n, p in m.named_parameters() if p.requires_grad]
    assert trainable == ["featurizer.weights"] and m.featurizer.weights.grad is not None
    m0 = S3PRLUpstream(_opts(tiny_ckpt, select_layer=0), DIM)
    m2 = S3PRLUpstream(_opts(tiny_ckpt, select_layer=2), DIM)
    x = _batch()
    last = S3PRLUpstream(_opts(tiny_ckpt), DIM)(x)
    torch.testing.assert_close(m2(x), last)
    assert not torch.allclose(m0(x), last)
    with pytest.raises(UserError, match="select_layer"):
        S3PRLUpstream(_opts(tiny_ckpt, select_layer=5), DIM)
    with pytest.raises(UserError, match="12-dim features"):
        S3PRLUpstream(_opts(tiny_ckpt), 40)
    with pytest.raises(UserError, match="no_grad: 'maybe' is not a boolean"):
        S3PRLUpstream(_opts(tiny_ckpt, no_grad="maybe"), DIM)


def test_arch_spec_aug_is_seeded_and_train_only(tiny_ckpt):
    a = S3PRLUpstream(_opts(tiny_ckpt, spec_aug=True, spec_aug_seed=7), DIM)
    b = S3PRLUpstream(_opts(tiny_ckpt, spec_aug=True, spec_aug_seed=7), DIM)
    plain = S3PRLUpstream(_opts(tiny_ckpt), DIM)
    x = _batch()
    a.train(), b.train()
    torch.testing.assert_close(a(x), b(x))
    a.eval()
    torch.testing.assert_close(a(x), plain(x))


def test_arch_built_from_generated_cfg_section(setup, tiny_ckpt):
    """PyTorch-Kaldi's path: check the section against pk_arch.proto, then arch_class(section, inp_dim)."""
    tmp, dirs = setup
    out = tmp / "ft.cfg"
    ov = ["--override", "type=upstream", "--override", "upstream.no_grad=false"]
    assert _run([*ov, "--upstream-ckpt", str(tiny_ckpt), *_args(dirs, out)]) == 0
    c = _read(out)
    sec = c["architecture1"]
    assert sec["arch_library"] == "s3prl.downstream.pk_arch" and sec["arch_class"] == "S3PRLUpstream"
    assert sec["arch_seq_model"] == "True" and sec["arch_freeze"] == "False"
    assert Path(sec["arch_proto"]) == PK_ARCH_PROTO
    proto = configparser.ConfigParser()
    proto.read(sec["arch_proto"])
    for field in proto["proto"]:
        assert field in sec, field
    assert Path(sec["upstream_ckpt"]).is_file()
    model = c["model"]["model"]
    assert "out_up=compute(S3PRL_upstream,s3prl)" in model and "out_dnn1=compute(MLP_layers1,out_up)" in model
    import importlib
    cls = getattr(importlib.import_module(sec["arch_library"]), sec["arch_class"])
    net = cls(sec, DIM)
    assert net(_batch()).shape == (9, 3, net.out_dim)
    assert any(p.requires_grad for p in net.upstream.parameters())
    # type upstream without a checkpoint is refused.
    assert _run([*ov, *_args(dirs, tmp / "y.cfg")]) == 1


def test_shipped_configs_load():
    for conf in sorted(ROOT.glob("egs/*/conf/pytorch_kaldi*.yaml")):
        load_config(PyTorchKaldiConfig, conf)
    assert (ROOT / "egs/librispeech/conf/pytorch_kaldi.yaml").is_file()
    assert (ROOT / "egs/timit/conf/pytorch_kaldi.yaml").is_file()


def test_rekey_kaldi_timit_ids(tmp_path):
    """Kaldi's own TIMIT recipe keys alignments `spk_utt`; ours are `spk-utt`."""
    feats = make_feats_dir(tmp_path / "feats")
    kaldi = make_ali_dir(tmp_path / "ali", {k.replace("-", "_"): v for k, v in FRAMES.items()})
    with pytest.raises(UserError, match="spk_utt ids: re-key them"):
        check_cli.check_alignments(feats, kaldi)
    r = subprocess.run([sys.executable, "-m", "s3prl.bin.check_alignments", "--rekey-into",
                        str(tmp_path / "ali_rekeyed"), str(feats), str(kaldi)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert read_alignment_lengths(tmp_path / "ali_rekeyed") == FRAMES
    assert (tmp_path / "ali_rekeyed" / "final.mdl").read_bytes() == (kaldi / "final.mdl").read_bytes()


# ---------------------------------------------------------------- PyTorch-Kaldi's batch layout
def _pk_seq_batch(lens=(9, 5, 7, 3), n_lab=1, seed=0):
    """A batch built the way core.run_nn builds one for arch_seq_model=True: time-major
    (max_len, B, D + labels), zeros around each sequence with a random amount on the left, and
    the feature slice `inp[:, :, 0:D]` of it handed to the architecture. Returns (x, [(left, n)])."""
    rnd = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    T, B = max(lens), len(lens)
    inp = torch.zeros(T, B, DIM + n_lab)
    spans = []
    for b, n in enumerate(lens):
        left = rnd.randint(0, T - n)
        inp[left:left + n, b, :DIM] = torch.randn(n, DIM, generator=g)
        inp[left:left + n, b, DIM:] = 1.0
        spans.append((left, n))
    return inp[:, :, 0:DIM], spans


@pytest.mark.parametrize("no_grad", [True, False])
def test_arch_output_viewable_like_forward_model(tiny_ckpt, no_grad):
    """D1: forward_model does `outs_dict[out].view(max_len * batch, -1)` before the MLP above a
    sequential architecture; that needs a contiguous (T, B, H) output."""
    net = S3PRLUpstream(_opts(tiny_ckpt, no_grad=no_grad), DIM)
    x, spans = _pk_seq_batch()
    T, B = x.shape[:2]
    assert any(left > 0 for left, _ in spans)
    net.eval()
    y = net(x)
    assert y.shape == (T, B, net.out_dim) and y.is_contiguous()
    # Left padding: each sequence's frames equal the upstream on that sequence alone; padding is 0.
    for b, (left, n) in enumerate(spans):
        alone = net(x[left:left + n, b:b + 1])
        torch.testing.assert_close(y[left:left + n, b], alone[:, 0], rtol=1e-5, atol=1e-5)
        assert torch.all(y[:left, b] == 0) and torch.all(y[left + n:, b] == 0)
    net.train()
    mlp = torch.nn.Linear(net.out_dim, 5)
    out = mlp(net(x).view(T * B, -1))
    torch.nn.functional.cross_entropy(out, torch.zeros(T * B, dtype=torch.long)).backward()
    assert mlp.weight.grad is not None and mlp.weight.grad.abs().sum() > 0
    up_grads = [p.grad for p in net.upstream.parameters()]
    if no_grad:
        assert all(g is None for g in up_grads)
    else:
        assert up_grads and all(g is not None for g in up_grads)
    # Batch-major output is contiguous as well.
    bm = S3PRLUpstream(_opts(tiny_ckpt, permute_input=False), DIM)
    assert bm(x.transpose(0, 1)).is_contiguous()


def test_arch_spec_aug_masks_follow_torch_seed(tiny_ckpt):
    """D6: PyTorch-Kaldi reseeds torch per chunk (seed + epoch + chunk) before building the
    architecture; each chunk must draw other masks, and the same chunk the same ones."""
    x = _batch()

    def masked(torch_seed):
        torch.manual_seed(torch_seed)
        m = S3PRLUpstream(_opts(tiny_ckpt, spec_aug=True, spec_aug_seed=7), DIM)
        m.train()
        return m(x)

    first = masked(1234)
    torch.testing.assert_close(masked(1234), first)
    assert not torch.allclose(masked(1235), first)


# ---------------------------------------------------------------- scoring (D2)
def test_librispeech_config_scores_with_kaldi_librispeech_scorer(setup, monkeypatch, capsys):
    tmp, dirs = setup
    conf = str(ROOT / "egs" / "librispeech" / "conf" / "pytorch_kaldi.yaml")
    scorer = dirs["kaldi"] / "egs" / "librispeech" / "s5" / "local" / "score.sh"
    out = tmp / "libri.cfg"
    assert _run(["--config", conf, *_args(dirs, out)]) == 0
    dec = _read(out)["decoding"]
    assert dec["scoring_script"] == str(scorer.resolve())
    assert dec["scoring_opts"] == '"--min-lmwt 4 --max-lmwt 23"'
    # --kaldi-root defaults to $KALDI_ROOT; without either the scorer is a one-line error.
    monkeypatch.setenv("KALDI_ROOT", str(dirs["kaldi"]))
    assert _run(["--config", conf, *_args(dirs, tmp / "env.cfg", kaldi=False)]) == 0
    assert _read(tmp / "env.cfg")["decoding"]["scoring_script"] == str(scorer.resolve())
    monkeypatch.delenv("KALDI_ROOT")
    capsys.readouterr()
    assert _run(["--config", conf, *_args(dirs, tmp / "none.cfg", kaldi=False)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "decoding.scoring_script" in err and "--kaldi-root" in err
    # A Kaldi root without the scorer, or a scorer decode_dnn.sh cannot execute.
    assert _run(["--config", conf, *_args(dirs, tmp / "x.cfg", ["--kaldi-root", str(tmp)], kaldi=False)]) == 1
    assert "does not exist" in capsys.readouterr().err
    scorer.chmod(0o644)
    assert _run(["--config", conf, *_args(dirs, tmp / "x.cfg")]) == 1
    assert "not executable" in capsys.readouterr().err
    assert not (tmp / "x.cfg").exists() and not (tmp / "none.cfg").exists()


def test_timit_scorer_needs_stm_glm_feats_and_the_script(setup, capsys):
    tmp, dirs = setup
    conf = str(ROOT / "egs" / "timit" / "conf" / "pytorch_kaldi.yaml")
    assert _run(["--config", conf, *_args(dirs, tmp / "t.cfg")]) == 0
    assert _read(tmp / "t.cfg")["decoding"]["scoring_script"] == "local/score.sh"
    test_dir = dirs["test_feats"]
    for name in ("stm", "glm"):
        saved = (test_dir / name).read_bytes()
        (test_dir / name).unlink()
        capsys.readouterr()
        assert _run(["--config", conf, *_args(dirs, tmp / "x.cfg")]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"no {name} in the scoring data dir" in err and str(test_dir) in err
        # Not scoring: the sclite reference is not needed.
        assert _run(["--config", conf, "--override", "decoding.skip_scoring=true",
                     *_args(dirs, tmp / f"skip_{name}.cfg")]) == 0
        (test_dir / name).write_bytes(saved)
    # The scoring data dir given apart from the features needs text and feats.scp (decode_dnn.sh).
    text_only = tmp / "data" / "test"
    text_only.mkdir(parents=True)
    for name in ("text", "stm", "glm"):
        (text_only / name).write_bytes((test_dir / name).read_bytes())
    assert _run(["--config", conf, *_args(dirs, tmp / "x.cfg", ["--test-text", str(text_only)])]) == 1
    assert "no feats.scp in the scoring data dir" in capsys.readouterr().err
    # A relative scorer must be one of the checkout's kaldi_decoding_scripts/.
    assert _run(["--config", conf, "--override", "decoding.scoring_script=local/score_wer.sh",
                 *_args(dirs, tmp / "x.cfg")]) == 1
    err = capsys.readouterr().err
    assert "decoding.scoring_script: local/score_wer.sh is not in" in err and str(dirs["pk"].resolve()) in err
    assert not (tmp / "x.cfg").exists()


def test_dump_copies_the_timit_scoring_reference():
    """prepare_timit writes stm/glm into data/<set>; PyTorch-Kaldi scores against the dump."""
    from s3prl.dump import COPY_FILES

    assert {"stm", "glm", "text", "utt2spk"} <= set(COPY_FILES)


# ---------------------------------------------------------------- refused options (D3, D4, D5, D7)
def test_decoding_num_threads_is_gone(setup, tmp_path, capsys):
    """D3: decode_dnn.sh sets num_threads=1 after reading the cfg, so we neither take nor write it."""
    tmp, dirs = setup
    assert _run(_args(dirs, tmp / "ok.cfg")) == 0
    assert "num_threads" not in _read(tmp / "ok.cfg")["decoding"]
    bad = tmp_path / "old.yaml"
    bad.write_text("decoding:\n  num_threads: 4\n")
    assert _run(["--config", str(bad), *_args(dirs, tmp / "x.cfg")]) == 1
    assert "decoding.num_threads" in capsys.readouterr().err


@pytest.mark.parametrize("override,what", [
    ("features.delta_order=2", "features.delta_order: 2 with type upstream"),
    ("features.cw_left=3", "features.cw_left: 3 with type upstream"),
    ("features.cw_right=1", "features.cw_right: 1 with type upstream"),
    ("exp.multi_gpu=true", "exp.multi_gpu: true with type upstream"),
])
def test_upstream_refuses_deltas_context_and_multi_gpu(setup, tiny_ckpt, override, what, capsys):
    """D4, D5: the upstream takes the plain features; DataParallel would split the time axis."""
    tmp, dirs = setup
    argv = ["--override", "type=upstream", "--override", override, "--upstream-ckpt", str(tiny_ckpt),
            *_args(dirs, tmp / "x.cfg")]
    assert _run(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and what in err
    # The same options are fine for the MLP over the features.
    assert _run(["--override", override, *_args(dirs, tmp / "mlp.cfg")]) == 0


def test_upstream_input_dim_checked_against_the_features(setup, tiny_ckpt, capsys):
    """D4: the checkpoint records its input dim; features of another dim are refused up front."""
    tmp, dirs = setup
    argv = ["--override", "type=upstream", "--upstream-ckpt", str(tiny_ckpt), *_args(dirs, tmp / "x.cfg")]
    (dirs["dev_feats"] / "feats_dim").write_text("40\n")
    assert _run(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "40-dim features but the upstream" in err and "takes 12-dim" in err and "--dev-feats" in err
    (dirs["dev_feats"] / "feats_dim").write_text(f"{DIM}\n")
    assert _run(argv) == 0


def test_use_cuda_false_is_refused(setup, capsys):
    """D7: with use_cuda=False run_exp.py forwards in subprocesses and run_nn.py fails on the batches."""
    tmp, dirs = setup
    capsys.readouterr()
    assert _run(["--override", "exp.use_cuda=false", *_args(dirs, tmp / "x.cfg")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "exp.use_cuda: false" in err


# ---------------------------------------------------------------- PyTorch-Kaldi's protos (D8)
# What PyTorch-Kaldi's proto/*.proto files declare (mravanelli/pytorch-kaldi 9773257, 2021-03),
# restated as section -> field -> type in the vocabulary of its utils.check_field:
#   path: an existing file or dir (or "none"); {a,b}: one of; int(lo,hi) / float(lo,hi): a number
#   in [lo, hi] ("inf" = open); float_list(lo,hi): comma-separated floats; bool: True/true/1/
#   False/false/0; bool_list: comma-separated bools; str, str_list, list_str: any non-empty value
#   (only `cmd` may be empty).
# "dataset" and "architecture" apply to every [datasetN] / [architectureN]. Keys are lower case
# because configparser lower-cases them (global.proto spells N_epochs_tr, N_chunks). Where
# global_chunk.proto (the per-chunk cfg run_exp.py derives and checks again) is stricter than
# global.proto, the stricter type is kept: batch_size_train, max_seq_length_train and arch_lr are
# list_str in global.proto but int(0,inf), int(20,inf), float(0,inf) per chunk.
# increase_seq_length_train is spelled "Bool" there, which check_field skips; core.py reads it
# with strtobool, so it is held to bool here. [decoding] joins global.proto's three fields with
# decoding.proto, which PyTorch-Kaldi declares but never enforces; `scoring_script` is read by
# decode_dnn.sh from the cfg without a proto entry.
PK_PROTO = {
    "cfg_proto": {"cfg_proto": "path", "cfg_proto_chunk": "path"},
    "exp": {"cmd": "str", "run_nn_script": "str", "out_folder": "str", "seed": "int(-inf,inf)",
            "use_cuda": "bool", "multi_gpu": "bool", "save_gpumem": "bool", "n_epochs_tr": "int(1,inf)"},
    "dataset": {"data_name": "str", "fea": "str", "lab": "str", "n_chunks": "int(1,inf)"},
    "data_use": {"train_with": "list_str", "valid_with": "list_str", "forward_with": "list_str"},
    "batches": {"batch_size_train": "int(0,inf)", "max_seq_length_train": "int(20,inf)",
                "increase_seq_length_train": "bool", "start_seq_len_train": "int(20,inf)",
                "multply_factor_seq_len_train": "int(0,inf)", "batch_size_valid": "int(1,inf)",
                "max_seq_length_valid": "int(20,inf)"},
    "architecture": {"arch_name": "str", "arch_proto": "path", "arch_library": "str", "arch_class": "str",
                     "arch_pretrain_file": "str", "arch_freeze": "bool", "arch_seq_model": "bool",
                     "arch_lr": "float(0,inf)", "arch_halving_factor": "float(0,inf)",
                     "arch_improvement_threshold": "float(0,inf)", "arch_opt": "{sgd,rmsprop,adam}"},
    "model": {"model_proto": "path", "model": "str"},
    "forward": {"forward_out": "str", "normalize_posteriors": "bool_list", "normalize_with_counts_from": "str",
                "save_out_file": "bool_list", "require_decoding": "bool_list"},
    "decoding": {"decoding_script_folder": "path", "decoding_script": "str", "decoding_proto": "path",
                 "min_active": "int(0,inf)", "max_active": "int(0,inf)", "max_mem": "int(0,inf)",
                 "beam": "float(0,inf)", "latbeam": "float(0,inf)", "acwt": "float(0,inf)",
                 "max_arcs": "int(-inf,inf)", "scoring_opts": "str", "norm_vars": "bool", "skip_scoring": "bool"},
}
PK_DECODING_EXTRA = {"scoring_script"}
# Architecture protos by file name (arch_proto), and the optimizer protos expand_section adds.
PK_ARCH_PROTOS = {
    "MLP.proto": {"dnn_lay": "str_list", "dnn_drop": "str_list", "dnn_use_laynorm_inp": "bool",
                  "dnn_use_batchnorm_inp": "bool", "dnn_use_batchnorm": "bool_list", "dnn_use_laynorm": "bool_list",
                  "dnn_act": "str_list"},
}
PK_OPT_PROTOS = {
    "sgd": {"opt_momentum": "float(0,inf)", "opt_weight_decay": "float(0,inf)", "opt_dampening": "float(0,inf)",
            "opt_nesterov": "bool"},
    "rmsprop": {"opt_momentum": "float(0,inf)", "opt_alpha": "float(0,inf)", "opt_eps": "float",
                "opt_centered": "bool", "opt_weight_decay": "float(0,inf)"},
    "adam": {"opt_betas": "float_list(0,inf)", "opt_eps": "float", "opt_weight_decay": "float(0,inf)",
             "opt_amsgrad": "bool"},
}
_PK_BOOLS = {"True", "true", "1", "False", "false", "0"}


def _in_range(value: str, typ: str, conv) -> bool:
    lo, hi = typ[typ.index("(") + 1:-1].split(",")
    try:
        v = conv(value)
    except ValueError:
        return False
    return (lo == "-inf" or v >= conv(lo)) and (hi == "inf" or v <= conv(hi))


def pk_field_error(value: str, typ: str, where: str) -> str | None:
    """check_field's verdict on one value: None if PyTorch-Kaldi accepts it, else why not."""
    if value == "" and not where.endswith(" cmd"):
        return f"{where}: empty"
    if typ == "path":
        ok = value == "none" or Path(value).exists()
    elif typ.startswith("{"):
        ok = value in typ[1:-1].split(",")
    elif typ.startswith("int("):
        ok = _in_range(value, typ, int)
    elif typ.startswith("float("):
        ok = _in_range(value, typ, float)
    elif typ.startswith("float_list("):
        ok = all(_in_range(v, typ, float) for v in value.split(","))
    elif typ == "float":  # declared without a range: check_field does not look at it; we do
        ok = _in_range(value, "float(-inf,inf)", float)
    elif typ == "bool":
        ok = value in _PK_BOOLS
    elif typ == "bool_list":
        ok = all(v in _PK_BOOLS for v in value.split(","))
    else:
        ok = typ in ("str", "str_list", "list_str")
    return None if ok else f"{where}: {value!r} is not {typ}"


def _arch_fields(sec: configparser.SectionProxy) -> dict[str, str]:
    name = Path(sec.get("arch_proto", "")).name
    if name in PK_ARCH_PROTOS:
        fields = dict(PK_ARCH_PROTOS[name])
    else:  # ours (pk_arch.proto), read as PyTorch-Kaldi's expand_section reads it
        proto = configparser.ConfigParser()
        proto.read(sec["arch_proto"])
        fields = dict(proto["proto"])
    return {**fields, **PK_OPT_PROTOS.get(sec.get("arch_opt", ""), {})}


def pk_proto_errors(c: configparser.ConfigParser) -> list[str]:
    """Every section and field PyTorch-Kaldi's protos make mandatory, typed as check_field
    types them; plus keys no proto declares in [architectureN] and [decoding] (they would be
    silently ignored, like the dead num_threads was)."""
    errors = []
    for sec, fields in PK_PROTO.items():
        if sec in ("dataset", "architecture"):
            names = [s for s in c.sections() if re.fullmatch(rf"{sec}\d+", s)]
        else:
            names = [sec] if sec in c else []
        if not names:
            errors.append(f"[{sec}]: missing section")
        for name in names:
            declared = dict(fields)
            if sec == "architecture":
                declared.update(_arch_fields(c[name]))
            for key, typ in declared.items():
                if key not in c[name]:
                    errors.append(f"[{name}] {key}: missing")
                elif (err := pk_field_error(c[name][key], typ, f"[{name}] {key}")) is not None:
                    errors.append(err)
            if sec in ("architecture", "decoding"):
                extra = set(c[name]) - set(declared) - (PK_DECODING_EXTRA if sec == "decoding" else set())
                errors += [f"[{name}] {key}: declared by no proto" for key in sorted(extra)]
    return errors


PROTO_VARIANTS = {
    "librispeech": ["--config", str(ROOT / "egs/librispeech/conf/pytorch_kaldi.yaml")],
    "timit_deltas_cw": ["--config", str(ROOT / "egs/timit/conf/pytorch_kaldi.yaml"), "--override",
                        "features.delta_order=2", "--override", "features.cw_left=3", "--override",
                        "features.cw_right=3", "--override", "features.norm_vars=true"],
    "other_optimizers": ["--override", "mlp.optim.opt=rmsprop", "--override", "output.opt=adam",
                         "--override", "labels.mono=true", "--override", "mlp.layers=[64]"],
    "upstream_finetune": ["--override", "type=upstream", "--override", "upstream.no_grad=false",
                          "--override", "upstream.optim.opt=sgd"],
    "upstream_frozen_wsum": ["--override", "type=upstream", "--override", "upstream.weighted_sum=true"],
    "upstream_frozen": ["--override", "type=upstream"],
}


@pytest.mark.parametrize("variant", sorted(PROTO_VARIANTS))
def test_generated_cfg_passes_pytorch_kaldi_protos(setup, tiny_ckpt, variant):
    """D8: every generated cfg against the PK_PROTO table, with check_field's rules."""
    tmp, dirs = setup
    out = tmp / f"{variant}.cfg"
    extra = ["--upstream-ckpt", str(tiny_ckpt)] if variant.startswith("upstream") else []
    assert _run([*PROTO_VARIANTS[variant], *extra, *_args(dirs, out)]) == 0
    c = _read(out)
    assert pk_proto_errors(c) == []
    opts = {c[s]["arch_opt"] for s in c.sections() if s.startswith("architecture")}
    assert opts <= set(PK_OPT_PROTOS)


def test_proto_check_catches_mismatches(setup):
    """The checker itself: each kind of mismatch PyTorch-Kaldi would reject (or ignore) is reported."""
    tmp, dirs = setup
    assert _run(["--override", "type=mlp", *_args(dirs, tmp / "x.cfg")]) == 0
    good = _read(tmp / "x.cfg")
    assert pk_proto_errors(good) == []
    cases = [("exp", "n_epochs_tr", None, "[exp] n_epochs_tr: missing"),
             ("exp", "seed", "1.5", "[exp] seed: '1.5' is not int"),
             ("exp", "use_cuda", "yes", "[exp] use_cuda: 'yes' is not bool"),
             ("batches", "start_seq_len_train", "10", "[batches] start_seq_len_train: '10' is not int(20,inf)"),
             ("architecture1", "arch_opt", "adagrad", "is not {sgd,rmsprop,adam}"),
             ("architecture1", "arch_lr", "-0.1", "[architecture1] arch_lr: '-0.1' is not float(0,inf)"),
             ("architecture1", "dnn_use_batchnorm", "True,maybe", "is not bool_list"),
             ("architecture1", "dnn_width", "3", "[architecture1] dnn_width: declared by no proto"),
             ("decoding", "num_threads", "4", "[decoding] num_threads: declared by no proto"),
             ("decoding", "decoding_proto", str(tmp / "nope.proto"), "is not path"),
             ("forward", "normalize_posteriors", "", "[forward] normalize_posteriors: empty")]
    for sec, key, value, what in cases:
        c = _read(tmp / "x.cfg")
        if value is None:
            del c[sec][key]
        else:
            c[sec][key] = value
        errs = pk_proto_errors(c)
        assert any(what in e for e in errs), (sec, key, errs)
    c = _read(tmp / "x.cfg")
    c.remove_section("forward")
    assert "[forward]: missing section" in pk_proto_errors(c)


def _pk_checkout() -> Path | None:
    for cand in (os.environ.get("PYTORCH_KALDI_ROOT"), ROOT / "tools" / "pytorch-kaldi"):
        if cand and (Path(cand) / "proto" / "global.proto").is_file():
            return Path(cand)
    return None


@pytest.mark.skipif(_pk_checkout() is None, reason="no PyTorch-Kaldi checkout (PYTORCH_KALDI_ROOT or "
                    "tools/install_pytorch_kaldi.sh)")
def test_proto_table_matches_pytorch_kaldi_checkout():
    """PK_PROTO against the real proto files, when a checkout is at hand."""
    pk = _pk_checkout()

    def read(name):
        p = configparser.ConfigParser()
        p.read(pk / "proto" / name)
        return p

    glob, chunk, dec = read("global.proto"), read("global_chunk.proto"), read("decoding.proto")
    for sec, fields in PK_PROTO.items():
        real = dict(glob[sec]) if sec in glob else {}
        if sec == "decoding":
            real.update(dec["proto"])
        assert set(fields) == set(real), sec
        for key, typ in fields.items():
            per_chunk = chunk[sec].get(key) if sec in chunk else None
            assert typ in (real[key], per_chunk) or (real[key], typ) == ("Bool", "bool"), (sec, key)
    for name, fields in PK_ARCH_PROTOS.items():
        assert fields == dict(read(name)["proto"]), name
    for opt, fields in PK_OPT_PROTOS.items():
        assert fields == dict(read(f"{opt}.proto")["proto"]), opt


# PyTorch-Kaldi's own checker, run the way run_exp.py runs it: check_cfg, conf.cfg, create_lists,
# create_configs (chunk cfgs checked against global_chunk.proto). hmm-info and analyze-counts stand
# in for Kaldi's (check_cfg asks them for the phone / pdf counts of the alignment dir).
_PK_RUN = r"""
import configparser, sys
from pathlib import Path
sys.path.insert(0, ".")
import utils
cfg = sys.argv[1]
config = configparser.ConfigParser()
config.read(cfg)
config, name_data, name_arch = utils.check_cfg(cfg, config, config["cfg_proto"]["cfg_proto"])
out = Path(config["exp"]["out_folder"])
with open(out / "conf.cfg", "w") as f:
    config.write(f)
utils.create_lists(config)
utils.create_configs(config)
print("ARCHS", ",".join(name_arch), "CHUNKS", len(list((out / "exp_files").glob("*.cfg"))))
"""


@pytest.mark.skipif(_pk_checkout() is None, reason="no PyTorch-Kaldi checkout (PYTORCH_KALDI_ROOT or "
                    "tools/install_pytorch_kaldi.sh)")
@pytest.mark.parametrize("variant", sorted(PROTO_VARIANTS))
def test_generated_cfg_passes_pytorch_kaldi_check_cfg(setup, tiny_ckpt, variant):
    """Every generated cfg through PyTorch-Kaldi's own config checks, when a checkout is at hand
    (its errors go to stderr and it exits 0, so success is its final print)."""
    pk = _pk_checkout()
    tmp, dirs = setup
    dirs = dict(dirs, pk=pk)
    out = tmp / "pk_exp" / f"{variant}.cfg"
    out.parent.mkdir()
    extra = ["--upstream-ckpt", str(tiny_ckpt)] if variant.startswith("upstream") else []
    assert _run([*PROTO_VARIANTS[variant], *extra, *_args(dirs, out)]) == 0
    fake = tmp / "kaldi-bin"
    fake.mkdir()
    (fake / "hmm-info").write_text("#!/bin/sh\necho 'number of phones 7'\necho 'number of pdfs 7'\n")
    (fake / "analyze-counts").write_text('#!/bin/sh\nfor a; do o=$a; done\necho "[ 1 1 1 1 1 1 1 ]" > "$o"\n')
    for f in fake.iterdir():
        f.chmod(0o755)
    env = dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}")
    r = subprocess.run([sys.executable, "-c", _PK_RUN, str(out)], cwd=pk, env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "ERROR" not in r.stderr, r.stderr[-2000:]
    archs, chunks = re.search(r"ARCHS (\S+) CHUNKS (\d+)", r.stdout).groups()
    assert ("S3PRL_upstream" in archs.split(",")) == variant.startswith("upstream")
    assert int(chunks) > 0


# ------------------------------------------ the hand-off feeds the upstream what it was trained on
def kaldi_add_deltas(m: np.ndarray, order: int, window: int) -> np.ndarray:
    """Kaldi's add-deltas as its DeltaFeatures::Process computes it (src/feat/feature-functions.cc):
    per order, a float accumulation of scale * frame over the window, edge frames replicated."""
    from s3prl.features.deltas import kaldi_delta_scales

    T, D = m.shape
    out = np.zeros((T, D * (order + 1)), dtype=np.float32)
    for i, scales in enumerate(kaldi_delta_scales(order, window)):
        scales = scales.astype(np.float32)
        off = (len(scales) - 1) // 2
        acc = np.zeros((T, D), dtype=np.float32)
        for j in range(-off, off + 1):
            if scales[j + off] != 0:
                acc += scales[j + off] * m[np.clip(np.arange(T) + j, 0, T - 1)]
        out[:, i * D:(i + 1) * D] = acc
    return out


def run_fea_opts(fea_lst: str, fea_opts: str) -> dict[str, np.ndarray]:
    """What PyTorch-Kaldi reads: `copy-feats scp:<fea_lst> ark:- | <fea_opts>`, with Kaldi's
    add-deltas and apply-cmvn played in float as Kaldi computes them (`kaldi_add_deltas`,
    s3prl.features.cmvn.apply_cmvn: Kaldi's ApplyCmvn). Any other command or option fails the
    test, so the chain written is exactly the chain checked."""
    from s3prl.features import apply_cmvn

    mats = {k: np.array(m, dtype=np.float32) for k, m in kaldiio.load_scp_sequential(fea_lst)}
    for cmd in [c.strip() for c in fea_opts.split("|") if c.strip()]:
        prog, *argv = cmd.split()
        opts = dict(a[2:].split("=", 1) for a in argv if a.startswith("--"))
        args = [a for a in argv if not a.startswith("--")]
        assert args[-2:] == ["ark:-", "ark:-"], cmd
        if prog == "add-deltas":
            assert set(opts) <= {"delta-order", "delta-window"} and len(args) == 2, cmd
            order, window = int(opts.get("delta-order", 2)), int(opts.get("delta-window", 2))
            mats = {k: kaldi_add_deltas(m, order, window) for k, m in mats.items()}
        elif prog == "apply-cmvn":
            assert set(opts) <= {"norm-vars", "utt2spk"} and len(args) == 3 and args[0].startswith("scp:"), cmd
            stats = dict(kaldiio.load_scp(args[0][4:]))
            if "utt2spk" in opts:
                assert opts["utt2spk"].startswith("ark:")
                spk = dict(line.split() for line in Path(opts["utt2spk"][4:]).read_text().splitlines())
            else:
                spk = {k: k for k in mats}
            nv = opts.get("norm-vars", "false") == "true"
            mats = {k: apply_cmvn(m, stats[spk[k]], norm_vars=nv) for k, m in mats.items()}
        else:
            raise AssertionError(f"unexpected command in fea_opts: {cmd}")
    return mats


def _audio(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 16000
    return (0.2 * torch.sin(2 * np.pi * (200 + 50 * seed) * t) + 0.05 * torch.randn(n, generator=g)).float()


# Odd frame counts: 23 and 57 frames (shorter than a transformer chunk), 131 and 257 (several).
AUDIO = {"spka-u1": 400 + 22 * 160 + 37, "spka-u2": 400 + 56 * 160 + 101,
         "spkb-u1": 400 + 130 * 160 + 3, "spkb-u2": 400 + 256 * 160 + 159}


def _audio_ckpt(path: Path, kind: str):
    """Tiny checkpoints with an audio section: a TERA on 40-mel fbank + deltas + per-utterance
    CMVN (50-frame chunks), a Mockingjay stacking 3 frames on plain fbank (no CMVN, 20 stacked
    frames a chunk), and APC on fbank with its per-utterance CMVN."""
    from s3prl.features import FeatureConfig as Audio
    from s3prl.upstream.checkpoint import save_upstream_checkpoint
    from s3prl.upstream.config import APCConfig, TransformerConfig, UpstreamConfig
    from s3prl.upstream.objectives import APCObjective, MaskedReconstruction

    torch.manual_seed(0)
    if kind == "apc":
        audio = Audio(num_mel_bins=40, per_utt_cmvn=True)
        cfg = UpstreamConfig(model="apc", apc=APCConfig(hidden_size=16, num_layers=2))
        obj, section = APCObjective(cfg, 40), audio.to_apc_audio()
    else:
        audio = (Audio(num_mel_bins=40, delta_order=1, per_utt_cmvn=True) if kind == "tera"
                 else Audio(num_mel_bins=40))
        dr, seq = (1, 50) if kind == "tera" else (3, 20)
        cfg = UpstreamConfig(model=kind, transformer=TransformerConfig(
            hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
            frame_stacking=dr, sequence_length=seq))
        obj, section = MaskedReconstruction(cfg, 40 * (audio.delta_order + 1)), audio.to_s3prl_audio()
    save_upstream_checkpoint(path, objective=obj, optimizer_state=None, scheduler_state=None, step=1,
                             runner_config={}, upstream_cfg=cfg, audio=section)
    return path


def _fbank_setup(tmp: Path, dump_cfg=None) -> dict[str, Path]:
    """Data dirs of plain 40-mel Kaldi fbank (what utils/compute_feats.sh writes, conf/feats.yaml
    included) with per-speaker cmvn.scp, + alignments, graph and scorer, as the recipes have them."""
    from s3prl.bin.compute_feats import config_yaml
    from s3prl.features import FeatureConfig as Audio
    from s3prl.features import compute_features

    dump_cfg = dump_cfg or Audio(num_mel_bins=40)
    feats = {u: compute_features(_audio(n, i), dump_cfg).numpy() for i, (u, n) in enumerate(AUDIO.items())}
    dirs = {}
    for s in ("train", "dev", "test"):
        d = make_feats_dir(tmp / "data" / f"{s}_fbank", feats=feats)
        (d / "conf").mkdir()
        (d / "conf" / "feats.yaml").write_text(config_yaml(dump_cfg))
        dirs[f"{s}_feats"] = d
        dirs[f"ali_{s}"] = make_ali_dir(tmp / "exp" / f"ali_{s}", {u: m.shape[0] for u, m in feats.items()})
    dirs["graph"] = make_graph_dir(tmp / "exp" / "graph")
    dirs["pk"] = make_pk_root(tmp / "pytorch-kaldi")
    dirs["kaldi"] = make_kaldi_root(tmp / "kaldi")
    return dirs


def _pk_forward(sec, mats: dict[str, np.ndarray], order: list[str]) -> dict[str, torch.Tensor]:
    """The architecture PyTorch-Kaldi builds from the cfg section, run on one (T, B, D) batch of
    the chain's output, zero-padded with some utterances shifted right; its frames per utterance."""
    import importlib

    cls = getattr(importlib.import_module(sec["arch_library"]), sec["arch_class"])
    dim = next(iter(mats.values())).shape[1]
    net = cls(sec, dim)
    net.eval()
    T = max(m.shape[0] for m in mats.values()) + 5
    x = torch.zeros(T, len(order), dim)
    lefts = [b % 3 * 2 for b in range(len(order))]
    for b, u in enumerate(order):
        x[lefts[b]:lefts[b] + mats[u].shape[0], b] = torch.from_numpy(mats[u])
    with torch.no_grad():
        y = net(x)
    return {u: y[lefts[b]:lefts[b] + mats[u].shape[0], b] for b, u in enumerate(order)}


@pytest.mark.parametrize("kind", ["tera", "mockingjay", "apc"])
def test_upstream_sees_its_training_input_through_the_cfg(tmp_path, kind):
    """The PyTorch-Kaldi architecture fed the cfg's fea_opts chain over plain fbank dumps gives the
    hub's output on the audio (<= 1e-4), for per-utterance CMVN + deltas (TERA), none (Mockingjay)
    and APC's CMVN; the speaker-CMVN chain written before did not (checked below)."""
    from s3prl.upstream.hub import load_upstream

    ckpt = _audio_ckpt(tmp_path / f"{kind}.ckpt", kind)
    dirs = _fbank_setup(tmp_path)
    out = tmp_path / "exp" / "pk" / "pytorch_kaldi.cfg"
    assert _run(["--override", "type=upstream", "--upstream-ckpt", str(ckpt), *_args(dirs, out)]) == 0
    c = _read(out)
    fea = _groups(c["dataset3"]["fea"])[0]
    cmvn = kind != "mockingjay"
    assert ("apply-cmvn --norm-vars=true scp:" in fea["fea_opts"]) == cmvn
    assert "--utt2spk" not in fea["fea_opts"]
    assert fea["fea_opts"].startswith("add-deltas --delta-order=1 --delta-window=2 " if kind == "tera"
                                      else "add-deltas --delta-order=0 ark:- ark:- |")
    mats = run_fea_opts(fea["fea_lst"], fea["fea_opts"])
    order = sorted(AUDIO)
    got = _pk_forward(c["architecture1"], mats, order)
    hub = load_upstream(ckpt)([_audio(AUDIO[u], list(AUDIO).index(u)) for u in order])
    for b, u in enumerate(order):
        n = got[u].shape[0]
        assert int(hub.lengths[b]) == n
        diff = (got[u] - hub.last_hidden_state[b, :n]).abs().max().item()
        assert diff <= 1e-4, (u, diff)  # measured 0 (no CMVN) to 2.6e-5
    if cmvn:
        # The chain written before this fix (speaker CMVN, no deltas) gives other numbers: the
        # comparison above would catch it. (TERA also needs its deltas to take the input at all.)
        old = run_fea_opts(fea["fea_lst"], f"apply-cmvn --utt2spk=ark:{dirs['test_feats']}/utt2spk "
                                           f"scp:{dirs['test_feats']}/cmvn.scp ark:- ark:- |")
        if kind == "apc":
            wrong = _pk_forward(c["architecture1"], old, order)
            assert max((wrong[u] - got[u]).abs().max().item() for u in order) > 1e-2
        else:
            with pytest.raises(UserError, match="40-dim input but the upstream takes 80-dim"):
                _pk_forward(c["architecture1"], old, order)
    # Regenerating with the same inputs leaves the stats alone; the cfg is unchanged.
    stats = sorted((tmp_path / "exp" / "pk" / "upstream_cmvn").glob("*.ark")) if cmvn else []
    assert len(stats) == (3 if cmvn else 0)
    before = [p.stat().st_mtime_ns for p in stats]
    text = out.read_text()
    assert _run(["--override", "type=upstream", "--upstream-ckpt", str(ckpt), *_args(dirs, out)]) == 0
    assert out.read_text() == text and [p.stat().st_mtime_ns for p in stats] == before


def test_upstream_input_mismatches_are_refused(tmp_path, capsys):
    from s3prl.features import FeatureConfig as Audio

    ckpt = _audio_ckpt(tmp_path / "tera.ckpt", "tera")
    up = ["--override", "type=upstream", "--upstream-ckpt", str(ckpt)]
    dirs = _fbank_setup(tmp_path / "a")
    # Speaker CMVN asked for explicitly would change the upstream's input.
    assert _run([*up, "--override", "features.apply_cmvn=true", *_args(dirs, tmp_path / "x.cfg")]) == 1
    assert "features.apply_cmvn: true with type upstream" in capsys.readouterr().err
    # Features dumped with other base options than the checkpoint's.
    dirs = _fbank_setup(tmp_path / "b", Audio(num_mel_bins=40, snip_edges=False))
    assert _run([*up, *_args(dirs, tmp_path / "y.cfg")]) == 1
    err = capsys.readouterr().err
    assert "conf/feats.yaml: snip_edges: False, but" in err and "trained on snip_edges: True" in err
    # Features with CMVN but without the checkpoint's deltas cannot be brought to its input.
    dirs = _fbank_setup(tmp_path / "c", Audio(num_mel_bins=40, per_utt_cmvn=True))
    assert _run([*up, *_args(dirs, tmp_path / "z.cfg")]) == 1
    assert "per_utt_cmvn True, but" in capsys.readouterr().err
    assert not (tmp_path / "upstream_cmvn").exists()


def test_utterance_cmvn_stats_make_apply_cmvn_the_hub_cmvn():
    """apply-cmvn --norm-vars=true with these stats == the hub's (x - mean) / (std + eps), with
    either std estimate, for short and long utterances and a constant dimension."""
    from s3prl.downstream.pytorch_kaldi import utterance_cmvn_stats
    from s3prl.features import apply_cmvn, utterance_cmvn

    rng = np.random.default_rng(0)
    for n in (2, 3, 17, 400):
        x = (rng.standard_normal((n, 6)) * 3 + 12).astype(np.float32)
        x[:, 5] = 4.25
        for eps, unbiased in ((1e-10, True), (1e-16, False)):
            want = utterance_cmvn(torch.from_numpy(x), eps=eps, unbiased=unbiased).numpy()
            got = apply_cmvn(x, utterance_cmvn_stats(x, eps, unbiased), norm_vars=True)
            np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)
            assert np.all(got[:, 5] == 0)
    # Kaldi's own stats (sums of squares) normalise with the biased std: not the hub's for short ones.
    from s3prl.features import cmvn_stats

    x = (rng.standard_normal((5, 3)) * 3 + 12).astype(np.float32)
    plain = apply_cmvn(x, cmvn_stats([x]), norm_vars=True)
    hub = utterance_cmvn(torch.from_numpy(x), eps=1e-10, unbiased=True).numpy()
    assert np.abs(plain - hub).max() > 0.05


def test_n_chunks_sized_from_the_data_and_empty_chunks_refused(setup, capsys):
    from s3prl.downstream.pytorch_kaldi import split_chunk_sizes

    # PyTorch-Kaldi's utils.split_chunks on 24 utterances in 50 chunks: 26 empty lists per epoch
    # (624 over 24 epochs); sizes always add up, and no list is empty while n_chunks <= items.
    assert split_chunk_sizes(24, 50).count(0) == 26
    for items in range(1, 60):
        for k in range(1, items + 1):
            sizes = split_chunk_sizes(items, k)
            assert sum(sizes) == items and min(sizes) >= 1
    tmp, dirs = setup
    # 3 utterances of 30 + 25 + 41 = 96 frames per set.
    assert _run(["--override", "data.n_chunks_train=50", *_args(dirs, tmp / "a.cfg")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "data.n_chunks_train: 50 chunks for the 3 utterances of" in err
    assert "would leave 47 of PyTorch-Kaldi's chunk lists empty" in err
    assert _run(["--override", "data.n_chunks_dev=4", *_args(dirs, tmp / "b.cfg")]) == 1
    assert "data.n_chunks_dev: 4 chunks for the 3 utterances" in capsys.readouterr().err
    assert not (tmp / "a.cfg").exists() and not (tmp / "b.cfg").exists()
    for max_frames, want in ((720000, 1), (50, 2), (40, 3), (1, 3)):
        out = tmp / f"c{max_frames}.cfg"
        assert _run(["--override", f"data.max_chunk_frames={max_frames}", *_args(dirs, out)]) == 0
        c = _read(out)
        assert [c[f"dataset{i}"]["n_chunks"] for i in (1, 2, 3)] == [str(want)] * 3
    assert _run(["--override", "data.n_chunks_train=3", *_args(dirs, tmp / "d.cfg")]) == 0
    assert _read(tmp / "d.cfg")["dataset1"]["n_chunks"] == "3"


def test_kaldi_add_deltas_emulation_is_add_deltas():
    """The float emulation of Kaldi's add-deltas agrees with s3prl.features.add_deltas (which the
    hub uses) to float rounding, and replicates edge frames."""
    from s3prl.features import add_deltas

    m = np.random.default_rng(3).standard_normal((9, 4)).astype(np.float32) * 5 + 10
    for order, window in ((0, 2), (1, 2), (2, 2), (2, 3)):
        ours = add_deltas(torch.from_numpy(m.copy()), order, window).numpy()
        np.testing.assert_allclose(kaldi_add_deltas(m, order, window), ours, rtol=0, atol=1e-5)
    one = kaldi_add_deltas(m[:1], 2, 2)
    assert np.abs(one[:, 4:]).max() < 1e-5 and np.array_equal(one[:, :4], m[:1])
