"""The hybrid DNN's inputs beyond dumps, through ``train_downstream --task hybrid`` on a tiny setup
built in seconds (no GMM training): the lang dirs and HCLG of a made-up lexicon, a monophone model
fresh from gmm-init-mono and random alignments in its transition ids. An upstream run on the fly
(a random 2-layer TERA) as the learned weighted sum of its layers (frozen: the checkpoints hold the
layer weights, not the upstream) and fine-tuned (the upstream trains and is saved), decoded
through HCLG; --lmwts / --beam land in the config's decode section; the option errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("kaldi_hmm_gmm")

from s3prl.bin import hybrid_lang, train_downstream  # noqa: E402
from s3prl.data.alignments import write_alignments  # noqa: E402
from s3prl.errors import UserError  # noqa: E402
from tests.conftest import REPO_ROOT, write_data_dir, write_tiny_tera  # noqa: E402

CONF = REPO_ROOT / "egs" / "librispeech" / "conf" / "downstream" / "hybrid_1hidden_tiny.yaml"
LEXICON = """<UNK> SPN
HELLO HH AH L OW
WORLD W ER L D
SPEECH S P IY CH
MODEL M AA D AH L
TERA T EH R AH
MOCKINGJAY M AA K IH NG JH EY
KALDI K AA L D IY
DATA D EY T AH
"""
FAST = ["runner.total_steps=4", "runner.dev_step=2", "runner.save_step=2", "runner.log_step=1",
        "dataloader.batch_size=3", "head.hidden_size=16"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from s3prl.data.dataset import FeatureDataset
    from s3prl.features.config import FeatureConfig
    from s3prl.hybrid import gmm, lang

    w = tmp_path_factory.mktemp("hybrid modes") / "w d"   # spaces in the path
    data = {"train": write_data_dir(w / "data" / "train", speakers=("1001", "1002", "1003"), seed=1),
            "dev": write_data_dir(w / "data" / "dev", speakers=("2001",), seed=2),
            "test": write_data_dir(w / "data" / "test", speakers=("3001",), seed=3)}
    (w / "lexicon.txt").write_text(LEXICON)
    assert hybrid_lang.main(["--lexicon", str(w / "lexicon.txt"), "--text", str(data["train"] / "text"),
                             str(w / "lang"), str(w / "lang_test")]) == 0
    rng = np.random.default_rng(0)
    topo = (w / "lang" / "topo").read_text()
    model = gmm.MonoModel.init_mono(topo, {"x": rng.standard_normal((50, 13)).astype(np.float32)})
    for s, d in data.items():
        lengths = FeatureDataset(d, features=FeatureConfig()).lengths   # 10 ms fbank frames, as the upstream's
        ali_dir = w / "exp" / f"mono_ali_{s}"
        ali_dir.mkdir(parents=True)
        model.save(ali_dir / "final.pt")
        utts = sorted((d / "wav.scp").read_text().split()[0::2])
        write_alignments(ali_dir / "ali.1.gz", {u: rng.integers(1, len(model.tid2pdf), int(n)).astype(np.int32)
                                                for u, n in zip(utts, lengths)})
    lang.make_graph(w / "lang_test", model.tree, model.tm, w / "exp" / "mono" / "graph")
    ckpt = write_tiny_tera(w / "exp" / "tera" / "states-7.ckpt")
    return w, data, ckpt, model


def _argv(setup, exp: str, *extra: str) -> list[str]:
    w, data, ckpt, _ = setup
    argv = ["--task", "hybrid", "--config", str(CONF), *[a for o in FAST for a in ("--override", o)]]
    for s in ("train", "dev", "test"):
        argv += [f"--{s}", str(data[s]), f"--ali-{s}", str(w / "exp" / f"mono_ali_{s}")]
    return argv + ["--graph", str(w / "exp" / "mono" / "graph"), "--upstream", ckpt, "--lmwts", "4 9",
                   "--beam", "8", "--results-md", str(w / "RESULTS.md"), "--no-progress", *extra, str(w / "exp" / exp)]


def _checkpoint(exp: Path) -> dict:
    return torch.load(exp / "best-dev.ckpt", map_location="cpu", weights_only=True)["model"]


def test_weighted_sum_on_the_fly(setup):
    w, data, ckpt, model = setup
    assert train_downstream.main(_argv(setup, "ws", "--on-the-fly", "--layer", "weighted_sum")) == 0
    exp = w / "exp" / "ws"
    r = json.loads((exp / "results.json").read_text())
    assert r["task"] == "hybrid" and r["layer"] == "weighted_sum" and r["upstream"] == "tera/states-7"
    assert r["num_pdfs"] == model.num_pdfs and r["lmwt"] in (4, 9) and r["steps"] == 4
    sd = _checkpoint(exp)
    assert any(k.startswith("featurizer.") for k in sd) and not any(k.startswith("upstream.") for k in sd)
    hyp = (exp / "decode_test" / "hyp.txt").read_text().splitlines()
    assert len(hyp) == len((data["test"] / "text").read_text().splitlines())
    assert {p.name for p in (exp / "decode_dev").iterdir()} >= {"wer_4", "wer_9"}
    cfg = (exp / "config.yaml").read_text()
    assert "decode:\n  lmwts:\n  - 4\n  - 9\n  beam: 8.0" in cfg and "on_the_fly: true" in cfg
    assert "| hybrid | tera/states-7 | weighted_sum | 1hidden |" in (w / "RESULTS.md").read_text()


def test_fine_tune_on_the_fly(setup):
    w, data, ckpt, _ = setup
    assert train_downstream.main(_argv(setup, "ft", "--on-the-fly", "--fine-tune")) == 0
    exp = w / "exp" / "ft"
    r = json.loads((exp / "results.json").read_text())
    assert r["layer"] == "last+ft"
    sd = _checkpoint(exp)
    up = {k: v for k, v in sd.items() if k.startswith("upstream.")}
    assert up, "a fine-tuned upstream is saved with the head"
    from s3prl.upstream.hub import load_upstream
    orig = {f"upstream.{k}": v for k, v in load_upstream(ckpt, device="cpu", fine_tune=True).state_dict().items()}
    changed = [k for k, v in up.items() if k in orig and v.is_floating_point() and not torch.equal(v, orig[k])]
    assert changed, "the upstream's weights moved in training"
    # the same run again: complete, nothing retrained
    assert train_downstream.main(_argv(setup, "ft", "--on-the-fly", "--fine-tune")) == 0
    assert json.loads((exp / "results.json").read_text())["config_hash"] == r["config_hash"]


def test_option_errors(setup, capsys):
    w = setup[0]
    with pytest.raises(UserError, match="--layer and --fine-tune need --on-the-fly"):
        train_downstream.main(_argv(setup, "bad", "--layer", "weighted_sum"))
    with pytest.raises(UserError, match="--lmwts '4 x'"):
        train_downstream.main([a if a != "4 9" else "4 x" for a in _argv(setup, "bad")])
    with pytest.raises(SystemExit):
        train_downstream.main(_argv(setup, "bad", "--hybrid-mode", "x"))
    assert not (w / "exp" / "bad").exists()
