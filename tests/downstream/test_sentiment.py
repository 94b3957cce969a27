"""Sentiment task (CMU-MOSEI protocol): configs, metrics, datasets, 2/7-class and regression
runs on the one trainer, the train_downstream dispatch. The egs/mosei recipe end to end (fbank
baselines, a dumped upstream, one on the fly) is tests/recipes/test_mosei_recipe.py."""
from __future__ import annotations

from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch
import yaml

from s3prl.config import ConfigError
from s3prl.downstream.results import parse_results_table
from s3prl.downstream.sentiment import (SENTIMENT_TABLE, SentimentDataset, load_sentiment_config, pearson,
                                        run_sentiment, sentiment_metrics)
from s3prl.downstream.task import RunInputs

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "egs" / "mosei"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Small GRU/linear models: one intra-op thread is several times faster than two on a busy
    # 2-core machine, and the numbers do not depend on it.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _write(path: Path, lines) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    """12 videos x 8 utterances of (T, 8) features whose mean along one direction is the score
    (plus a per-video offset and noise); split 8/2/2 videos. Returns (feats dir, label dir, scores)."""
    root = tmp_path_factory.mktemp("sentiment")
    rng = np.random.default_rng(0)
    direction = rng.normal(size=8)
    direction /= np.linalg.norm(direction)
    feats, scores, utt2spk = {}, {}, {}
    videos = [f"vid{v:02d}" for v in range(12)]
    for v in videos:
        offset = rng.normal(0, 0.3, size=8)
        for k in range(8):
            utt = f"{v}-{k:04d}"
            s = float(np.round(rng.uniform(-3, 3) * 3) / 3)
            s = s if abs(s) >= 0.1 else 1.0
            T = int(rng.integers(30, 90))
            x = s * direction * 2.0 + offset + rng.normal(0, 0.5, size=(T, 8))
            feats[utt], scores[utt], utt2spk[utt] = x.astype(np.float32), s, v
    fdir = root / "feats"
    fdir.mkdir()
    with kaldiio.WriteHelper(f"ark,scp:{fdir / 'feats.ark'},{fdir / 'feats.scp'}") as w:
        for u in sorted(feats):
            w(u, feats[u])
    _write(fdir / "utt2spk", [f"{u} {utt2spk[u]}" for u in sorted(feats)])
    _write(fdir / "spk2utt", [f"{v} " + " ".join(u for u in sorted(feats) if utt2spk[u] == v) for v in videos])
    _write(fdir / "utt2num_frames", [f"{u} {feats[u].shape[0]}" for u in sorted(feats)])
    lab = root / "labels"
    _write(lab / "utt2sentiment", [f"{u} {scores[u]:.4f}" for u in sorted(feats)])
    split = {"train": videos[:8], "dev": videos[8:10], "test": videos[10:]}
    for name, vids in split.items():
        _write(lab / f"{name}.list", [u for u in sorted(feats) if utt2spk[u] in vids])
    return fdir, lab, scores


def _cfg(mode: str, head: str = "utterance", steps: int = 60, extra=()):
    return load_sentiment_config(RECIPE / "conf" / "downstream" / f"sentiment_{'rnn' if head == 'rnn' else 'meanpool'}_tiny.yaml",
                                 [f"labels.mode={mode}", f"runner.total_steps={steps}", "runner.dev_step=20",
                                  "runner.log_step=20", "runner.save_step=1000", "optimizer.lr=0.01",
                                  "dataloader.batch_size=8", *extra])


def test_shipped_configs_load():
    files = sorted((RECIPE / "conf" / "downstream").glob("*.yaml"))
    assert len(files) == 4
    for f in files:
        cfg = load_sentiment_config(f)
        assert cfg.task == "sentiment" and cfg.labels.mode == "2class" and cfg.labels.max_frames == 5000
        assert cfg.head.name in ("rnn", "utterance") and cfg.optimizer.name == "Adam"
    rnn = load_sentiment_config(RECIPE / "conf" / "downstream" / "sentiment_rnn.yaml")
    assert (rnn.head.rnn_hidden_size, rnn.head.rnn_sample_rate, rnn.head.rnn_dropout) == (32, 5, 0.5)
    with pytest.raises(ConfigError, match="not a sentiment head"):
        load_sentiment_config(None, ["head.name=linear"])
    with pytest.raises(ConfigError, match="mode 'five'"):
        load_sentiment_config(None, ["labels.mode=five"])


def test_metrics():
    x, y = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 5.0, 9.0]
    assert pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert np.isnan(pearson([1, 1, 1], [1, 2, 3]))
    m = sentiment_metrics("regression", torch.tensor([0.5, -1.0, 2.0]), torch.tensor([1.0, -2.0, -1.0]))
    assert m["mae"] == pytest.approx((0.5 + 1.0 + 3.0) / 3)
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["pearson"] == pytest.approx(np.corrcoef([0.5, -1.0, 2.0], [1.0, -2.0, -1.0])[0, 1])
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0], [0.0, 1.0]])
    assert sentiment_metrics("2class", logits, torch.tensor([0, 1, 1, 1]))["accuracy"] == pytest.approx(0.75)


def test_dataset_truncates_and_types(fixture):
    from s3prl.data.dataset import FeatureDataset

    fdir, _, scores = fixture
    fd = FeatureDataset(fdir, utts=["vid00-0000", "vid00-0001"])
    ds = SentimentDataset(fd, {u: scores[u] for u in fd.utts}, max_frames=20)
    item = ds[0]
    assert item["feats"].shape == (20, 8) and item["label"].dtype == torch.float32
    assert ds.bucket_lengths() == [20, 20]
    ds = SentimentDataset(fd, {u: 1 for u in fd.utts})
    assert ds[1]["label"].dtype == torch.long and ds[1]["feats"].shape[0] == fd.lengths[1]


@pytest.mark.parametrize("mode", ["2class", "7class", "regression"])
def test_train_modes(fixture, tmp_path, mode):
    fdir, lab, scores = fixture
    md = tmp_path / "RESULTS.md"
    steps = 200 if mode == "7class" else 80
    rec = run_sentiment(_cfg(mode, steps=steps), RunInputs(str(lab), feats_dir=str(fdir), upstream="fbank"),
                        tmp_path / "exp", results_md=md, progress=False)
    assert rec["labels"] == mode and rec["steps"] == steps and rec["num_utts"] == {"train": 64, "dev": 16, "test": 16}
    assert rec["best_step"] % 20 == 0
    if mode == "2class":
        assert rec["test_accuracy"] >= 0.85 and rec["dev_mae"] is None
    elif mode == "7class":
        classes = {int(line.split()[3]) for line in (tmp_path / "exp" / "predictions.txt").read_text().splitlines()}
        assert rec["num_outputs"] == 7 and classes <= set(range(7)) and len(classes) >= 3
        assert rec["test_accuracy"] > 0.4     # majority class (3) ~ 1/3 here
    else:
        test = [scores[u] for u in (lab / "test.list").read_text().split()]
        assert rec["test_mae"] < 0.6 * np.mean(np.abs(np.array(test) - np.mean(test)))
        assert rec["test_pearson"] > 0.8 and rec["test_accuracy"] >= 0.8
    rows = parse_results_table(md.read_text(), str(md), SENTIMENT_TABLE)
    assert len(rows) == 1 and rows[0][:4] == [mode, "fbank", "last", "utterance"]
    assert rows[0][-2] == "c:{} f:{} k:-".format(rec["fingerprints"]["corpus"][:4], rec["fingerprints"]["features"][:4])
    preds = (tmp_path / "exp" / "predictions.txt").read_text().splitlines()
    assert len(preds) == 32 and preds[0].split()[0] == "dev"
    # rerun: complete, no training
    again = run_sentiment(_cfg(mode, steps=steps), RunInputs(str(lab), feats_dir=str(fdir), upstream="fbank"),
                          tmp_path / "exp", results_md=md, progress=False)
    assert again["skipped"] and again["test_accuracy"] == rec["test_accuracy"]


def test_train_downstream_dispatch(fixture, tmp_path, capsys):
    from s3prl.bin.train_downstream import main

    fdir, lab, _ = fixture
    cfg = RECIPE / "conf" / "downstream" / "sentiment_rnn_tiny.yaml"     # task: sentiment in the YAML
    args = ["--config", str(cfg), "--override", "runner.total_steps=20", "--labels", str(lab), "--feats", str(fdir),
            "--results-md", str(tmp_path / "R.md"), "--no-progress", str(tmp_path / "exp")]
    assert main(args) == 0
    assert "sentiment 2class rnn" in capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out.startswith("complete: sentiment 2class rnn")
    with pytest.raises(Exception, match="another config"):
        main(args[:3] + ["runner.total_steps=21"] + args[4:])


def test_bad_label_dir(fixture, tmp_path):
    from s3prl.errors import UserError

    fdir, lab, _ = fixture
    bad = tmp_path / "lab"
    bad.mkdir()
    for f in lab.iterdir():
        (bad / f.name).write_text(f.read_text())
    (bad / "dev.list").write_text((lab / "dev.list").read_text() + "vid00-0000\n")
    with pytest.raises(UserError, match="utterance 'vid00-0000' is also in train.list"):
        run_sentiment(_cfg("2class"), RunInputs(str(bad), feats_dir=str(fdir)), tmp_path / "e", progress=False)
    (bad / "dev.list").write_text((lab / "dev.list").read_text())
    (bad / "utt2sentiment").write_text((lab / "utt2sentiment").read_text().replace("vid00-0000 ", "vid00-0000 x"))
    with pytest.raises(UserError, match="utterance 'vid00-0000': score"):
        run_sentiment(_cfg("2class"), RunInputs(str(bad), feats_dir=str(fdir)), tmp_path / "e2", progress=False)
