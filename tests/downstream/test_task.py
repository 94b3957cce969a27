"""Downstream runs end to end on tiny dumped features: accuracy, label alignment, best-dev
selection, resume / skip-if-complete, speaker heads and bad inputs."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from s3prl.bin import train_downstream
from s3prl.downstream.config import load_downstream_config
from s3prl.downstream.data import IGNORE_INDEX
from s3prl.downstream.results import parse_results_table
from s3prl.downstream.task import ClassificationTask, RunInputs, accuracy_counts, run_downstream
from s3prl.errors import UserError

from ..conftest import REPO_ROOT
from .conftest import build_cpc

FAST = ["runner.total_steps=40", "runner.log_step=10", "runner.save_step=20", "runner.dev_step=10",
        "optimizer.lr=0.02"]


def _run(fx, exp, head="linear", task="phone", extra=(), **kw):
    cfg = load_downstream_config(None, [f"head.name={head}", *FAST, *extra], task=task)
    return run_downstream(cfg, RunInputs(str(fx.labels), feats_dir=str(fx.feats)), exp, progress=False, **kw)


def test_accuracy_counts_only_valid_frames():
    logits = torch.zeros(2, 4, 3)
    logits[..., 1] = 1.0                                   # predicts class 1 everywhere
    labels = torch.tensor([[1, 1, 0, IGNORE_INDEX], [1, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]])
    assert accuracy_counts(logits, labels) == (3, 4)
    logits[0, 3] = torch.tensor([9.0, 0, 0])               # wrong predictions on padding: no change
    logits[1, 1:] = torch.tensor([0, 0, 9.0])
    assert accuracy_counts(logits, labels) == (3, 4)


def test_phone_linear_and_misaligned_labels(tmp_path):
    good = build_cpc(tmp_path / "good")
    rec = _run(good, tmp_path / "exp_good", results_md=tmp_path / "RESULTS.md")
    assert rec["task"] == "phone" and rec["num_classes"] == 41 and rec["steps"] == 40
    assert rec["test_accuracy"] > 0.8
    # Labels shifted by 4 frames (features untouched) must lower accuracy clearly.
    shifted = build_cpc(tmp_path / "shift", label_shift=4)
    rec2 = _run(shifted, tmp_path / "exp_shift")
    assert rec2["test_accuracy"] < rec["test_accuracy"] - 0.2
    exp = tmp_path / "exp_good"
    on_disk = json.loads((exp / "results.json").read_text())
    assert on_disk["config_hash"] == rec["config_hash"] and len(rec["config_hash"]) == 10
    assert (exp / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert (exp / "best-dev.ckpt").is_file() and (exp / "states-40.ckpt").is_file()
    rows = parse_results_table((tmp_path / "RESULTS.md").read_text())
    assert len(rows) == 1 and rows[0][:4] == ["phone", "feats", "last", "linear"]

    # Skip-if-complete: same config -> no work, same record.
    mtime = (exp / "results.json").stat().st_mtime_ns
    again = _run(good, exp, results_md=tmp_path / "RESULTS.md")
    assert again["skipped"] and (exp / "results.json").stat().st_mtime_ns == mtime
    assert len(parse_results_table((tmp_path / "RESULTS.md").read_text())) == 1
    # Resume: without results.json the run restarts from states-40.ckpt and trains nothing more.
    (exp / "results.json").unlink()
    resumed = _run(good, exp)
    assert resumed["steps"] == 40 and resumed["test_accuracy"] == rec["test_accuracy"]
    # Another config in the same exp dir is refused.
    with pytest.raises(UserError, match="another config"):
        _run(good, exp, extra=["optimizer.lr=0.01"])


def test_test_is_scored_at_best_dev_step(tmp_path, monkeypatch):
    fx = build_cpc(tmp_path)
    real = ClassificationTask.evaluate

    def late_steps_look_bad(self, model, loader):
        out = real(self, model, loader)
        if self.current_step() > 20:       # dev evaluations after step 20 report 0 accuracy
            out["accuracy"] = 0.0
            self.dev_history[-1][1] = 0.0
        return out

    monkeypatch.setattr(ClassificationTask, "evaluate", late_steps_look_bad)
    rec = _run(fx, tmp_path / "exp")
    assert rec["steps"] == 40 and rec["best_step"] in (10, 20)
    # The reported test accuracy is that of best-dev.ckpt, scored independently here.
    monkeypatch.setattr(ClassificationTask, "evaluate", real)
    from s3prl.downstream.task import _loader, build_run
    cfg = load_downstream_config(None, ["head.name=linear", *FAST], task="phone")
    for ckpt, expect_same in (("best-dev.ckpt", True), ("states-40.ckpt", None)):
        task, datasets, _ = build_run(cfg, RunInputs(str(fx.labels), feats_dir=str(fx.feats)))
        state = task.read_checkpoint(tmp_path / "exp" / ckpt)
        task.current_step = lambda: 0
        acc = real(task, task.model.eval(), _loader(datasets["test"], 12, cfg))["accuracy"]
        if expect_same:
            assert state["step"] == rec["best_step"] and acc == rec["test_accuracy"]
        else:
            assert state["step"] == 40


@pytest.mark.parametrize("head,metric", [("frame", "frame accuracy"), ("utterance", "utterance accuracy"),
                                         ("rnn", "utterance accuracy")])
def test_speaker_heads(tmp_path, cpc, head, metric):
    rec = _run(cpc, tmp_path / "exp", head=head, task="speaker",
               extra=["runner.total_steps=30", "runner.save_step=30"])
    assert rec["num_classes"] == 4 and rec["metric"] == metric
    assert rec["test_count"] == (4 if head != "frame" else sum(
        len(cpc.phone_labels[u]) for u in (tmp_path / "cpc" / "test_split.txt").read_text().split()))
    if head != "rnn":   # the 32-unit GRU with dropout needs more than 30 steps
        assert rec["test_accuracy"] >= 0.75


def test_speaker_utterance_global_cmvn_on_offset_features(tmp_path):
    # Log-mel-like features (every value near 15, speakers differing by ~1): the mean-pooled
    # utterance head cannot learn them raw within the budget (the demo's fbank speaker row sat at
    # chance); the training split's global CMVN (the shipped speaker configs) makes them learnable.
    fx = build_cpc(tmp_path / "c", speakers=tuple(str(100 + i) for i in range(10)), offset=15.0)
    acc = {}
    for cmvn in ("none", "global"):
        rec = _run(fx, tmp_path / cmvn, head="utterance", task="speaker",
                   extra=["runner.total_steps=60", "runner.save_step=30", f"dataloader.cmvn={cmvn}",
                          f"dataloader.norm_vars={cmvn == 'global'}"])
        acc[cmvn] = rec["test_accuracy"]
    assert acc["global"] >= 0.9 and acc["none"] <= 0.5, acc
    shipped = load_downstream_config(REPO_ROOT / "egs/librispeech/conf/downstream/speaker_utterance_tiny.yaml")
    assert shipped.dataloader.cmvn == "global" and shipped.dataloader.norm_vars


def test_rerun_after_the_dump_changed_is_not_skipped(tmp_path):
    # The config hash covers what made the dump (its upstream.json): a re-dump with another
    # checkpoint must not be skipped as complete (stale results); the exp dir refuses it instead.
    fx = build_cpc(tmp_path / "c")
    info = {"path": "/x/tera.ckpt", "size": 1, "mtime": 1, "sha256": "a" * 64, "layer": 3}
    (fx.feats / "upstream.json").write_text(json.dumps(info))
    rec = _run(fx, tmp_path / "exp")
    again = _run(fx, tmp_path / "exp")
    assert again["skipped"] and again["config_hash"] == rec["config_hash"]
    # the same checkpoint copied elsewhere or touched (same sha256): still the same inputs
    (fx.feats / "upstream.json").write_text(json.dumps({**info, "path": "/y/tera.ckpt", "mtime": 2}))
    assert _run(fx, tmp_path / "exp")["skipped"]
    (fx.feats / "upstream.json").write_text(json.dumps({**info, "sha256": "b" * 64}))
    with pytest.raises(UserError, match="another config or inputs"):
        _run(fx, tmp_path / "exp")
    other = _run(fx, tmp_path / "exp2")
    assert other["config_hash"] != rec["config_hash"]


def _cli(fx, exp, *extra):
    return train_downstream.main(["--labels", str(fx.labels), "--feats", str(fx.feats), "--task", "phone",
                                  "--override", "runner.total_steps=2", "--no-progress", "--results-md", "",
                                  *extra, str(exp)])


def test_bad_inputs(tmp_path):
    fx = build_cpc(tmp_path / "a")
    lab = fx.labels / "converted_aligned_phones.txt"
    lines = lab.read_text().splitlines()
    # a class id out of range
    lab.write_text("\n".join(lines[:-1] + [lines[-1] + " 41"]) + "\n")
    with pytest.raises(UserError, match=rf"converted_aligned_phones.txt:{len(lines)}: .*class id 41 is out of range"):
        _cli(fx, tmp_path / "e1")
    # an utterance missing from the label file
    lab.write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(UserError, match=f"missing for 1 utterance.*'{fx.utts[0]}'"):
        _cli(fx, tmp_path / "e2")
    lab.write_text("\n".join(lines) + "\n")
    # a dump made from another upstream than the one named
    (fx.feats / "upstream.json").write_text(json.dumps({"path": "/x/exp/apc_tiny/states-10.ckpt",
                                                        "sha256": "0" * 64, "layer": 3}))
    with pytest.raises(UserError, match="dumped from upstream '/x/exp/apc_tiny/states-10.ckpt', not 'tera_tiny'"):
        _cli(fx, tmp_path / "e3", "--upstream", "tera_tiny")
    # mel160 / 12.5 ms features do not line up with the 10 ms labels
    (fx.feats / "upstream.json").unlink()
    (fx.feats / "frame_shift").write_text("0.0125\n")
    with pytest.raises(UserError, match="frame shift 0.0125 s"):
        _cli(fx, tmp_path / "e4")
    # features 3 frames longer than the labels: refused, naming the utterance and both counts
    far = build_cpc(tmp_path / "b", feat_extra=3)
    with pytest.raises(UserError, match=r"utterance '.*': \d+ feature frames vs \d+ label frames"):
        _cli(far, tmp_path / "e5")
    # ... but 2 frames are within the tolerance
    near = build_cpc(tmp_path / "c", feat_extra=2)
    assert _cli(near, tmp_path / "ok") == 0


def test_cli_exit_status_and_one_line_error(tmp_path, cpc):
    (cpc.labels / "test_split.txt").unlink()
    proc = subprocess.run([sys.executable, "-m", "s3prl.bin.train_downstream", "--labels", str(cpc.labels),
                           "--feats", str(cpc.feats), str(tmp_path / "exp")], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "test_split.txt: cannot read split file" in proc.stderr


def test_on_the_fly_baseline_upstream(tmp_path, make_data_dir):
    """--data + --upstream fbank: features computed from wav.scp, the upstream inside the model."""
    data = make_data_dir(tmp_path / "data", speakers=("103", "1034", "19"), utts_per_speaker=4, duration=0.6)
    utts = sorted(line.split()[0] for line in (data / "utt2spk").read_text().splitlines())
    cpc = tmp_path / "cpc"
    cpc.mkdir()
    test = [next(u for u in utts if u.startswith(s + "-")) for s in ("103", "1034", "19")]
    (cpc / "train_split.txt").write_text("".join(u + "\n" for u in utts if u not in test))
    (cpc / "test_split.txt").write_text("".join(u + "\n" for u in test))
    cfg = load_downstream_config(None, ["head.name=utterance", *FAST, "runner.total_steps=20",
                                        "runner.save_step=20", "dataloader.cmvn=utterance"], task="speaker")
    rec = run_downstream(cfg, RunInputs(str(cpc), data_dir=str(data), upstream="fbank"), tmp_path / "exp",
                         progress=False)
    assert rec["upstream"] == "fbank" and rec["num_classes"] == 3 and rec["test_count"] == 3
    assert 0.0 <= rec["test_accuracy"] <= 1.0
    with pytest.raises(UserError, match="12.5 ms|10 ms"):
        run_downstream(cfg, RunInputs(str(cpc), data_dir=str(data), upstream="mel160"), tmp_path / "exp2",
                       progress=False)
