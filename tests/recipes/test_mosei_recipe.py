"""Smoke test of egs/mosei/run.sh with its DEFAULT options on the tiny synthetic MOSEI corpus.

Stages 0-5 run with every default (fbank features, both heads, 2-class labels, the tiny downstream
configs, 4 jobs) except the corpus size (``--synth-preset tiny``: 8 videos, 48 segments kept), so a
default that cannot run on a fresh machine fails here. Stage 3 (the dump) only runs for upstreams
given with --upstream-ckpts, so a second run adds a tiny TERA checkpoint (pre-trained here for a
few steps) with the recipe's default dump options: device, layer, chunk context. A third runs an
upstream on the fly (--upstream-mode frozen) next to the finished fbank runs, which it leaves alone.
All three share one run of stages 0-5 (the module fixture): the corpus, features and fbank
baselines are made once.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import yaml

from s3prl.data.kaldi_dir import DataDir, validate_data_dir
from s3prl.downstream.results import parse_results_table
from s3prl.downstream.sentiment import SENTIMENT_TABLE
from tests.conftest import link_recipe, write_tiny_tera
from tests.reliability.harness import cli
from tests.reliability.conftest import pretrain_cmd

pytestmark = pytest.mark.slow


def _run(rdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run(["bash", str(rdir / "run.sh"), "--synth-preset", "tiny", *args], cwd=str(rdir.parent),
                       env=env, capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        raise AssertionError(f"run.sh {' '.join(args)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}")
    return p


def _results(rdir: Path) -> dict[str, dict]:
    return {d.name: json.loads((d / "results.json").read_text())
            for d in sorted((rdir / "exp" / "sentiment").iterdir()) if (d / "results.json").is_file()}


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    rdir = link_recipe("mosei", tmp_path_factory.mktemp("mosei") / "egs" / "mosei")
    p = _run(rdir)
    return rdir, p


def test_all_stages_with_default_options(recipe):
    rdir, p = recipe
    data = rdir / "data" / "mosei"
    validate_data_dir(data, no_text=True)  # segments, features, cmvn (no transcription)
    dd = DataDir(data)
    assert len(dd.utts) == 48 and (data / "segments").is_file() and (data / "cmvn.scp").is_file()
    assert (data / "feats_dim").read_text().split()[0] == "80"
    labels = rdir / "data" / "sentiment"
    splits = {s: (labels / f"{s}.list").read_text().split() for s in ("train", "dev", "test")}
    assert sorted(sum(splits.values(), [])) == dd.utts
    assert [len(splits[s]) for s in ("train", "dev", "test")] == [36, 6, 6]
    res = _results(rdir)
    assert sorted(res) == ["2class_meanpool_fbank", "2class_rnn_fbank"]  # default heads and labels
    for r in res.values():
        assert r["steps"] == 60 and 0.0 <= r["test_accuracy"] <= 100.0
    table = (rdir / "RESULTS.md").read_text()
    assert table.count("| 2class | fbank |") == 2
    rows = parse_results_table(table, "RESULTS.md", SENTIMENT_TABLE)
    assert sorted((r[0], r[1], r[3]) for r in rows) == [("2class", "fbank", "rnn"), ("2class", "fbank", "utterance")]  # meanpool: the utterance head
    assert all(0.0 <= float(r[4]) <= 100.0 and 0.0 <= float(r[5]) <= 100.0 for r in rows), rows
    assert "Stage 5: results" in p.stderr + p.stdout
    assert "| 2class | fbank |" in p.stdout      # stage 5 prints the table


def test_dump_stage_with_an_upstream_and_default_dump_options(recipe):
    rdir, _ = recipe
    exp = rdir / "exp" / "tera_smoke"
    r = cli(pretrain_cmd(rdir / "data" / "mosei", exp))
    assert r.returncode == 0, r.stderr[-3000:]
    before = _results(rdir)
    _run(rdir, "--stage", "3", "--upstream-ckpts", str(exp))
    dumps = list((rdir / "dump" / "tera_smoke").glob("layer-*/mosei"))
    assert len(dumps) == 1  # layer=last
    validate_data_dir(dumps[0], no_text=True)
    frames = DataDir(rdir / "data" / "mosei").utt2num_frames
    mats = {k: np.asarray(v) for k, v in kaldiio.load_scp(str(dumps[0] / "feats.scp")).items()}
    assert {k: m.shape[0] for k, m in mats.items()} == dict(frames)
    assert all(np.isfinite(m).all() for m in mats.values())
    logs = sorted((rdir / "dump" / "tera_smoke" / "log").rglob("extract.*.log"))
    assert logs and all("--device auto" in lg.read_text() and "--chunk-context 12" in lg.read_text() for lg in logs)
    after = _results(rdir)
    layer = dumps[0].parent.name
    assert sorted(after) == sorted(list(before) + [f"2class_meanpool_tera_smoke_{layer}",
                                                   f"2class_rnn_tera_smoke_{layer}"])
    for k in before:  # the finished fbank runs were kept, not redone
        assert after[k] == before[k]


def test_upstream_on_the_fly_next_to_the_finished_fbank_run(recipe, tmp_path):
    """An upstream run on the fly (frozen): it encodes long inputs with the dump's chunk context, and
    the finished fbank run is left as it is (same config, skipped)."""
    rdir, _ = recipe
    # (--upstream-ckpts is a space-separated list, as Kaldi's list options: no spaces in its paths)
    ckpt = write_tiny_tera(tmp_path / "tera" / "states-7.ckpt", sequence_length=20)
    fbank_cfg = (rdir / "exp" / "sentiment" / "2class_rnn_fbank" / "config.yaml").read_text()
    before = parse_results_table((rdir / "RESULTS.md").read_text(), "RESULTS.md", SENTIMENT_TABLE)
    _run(rdir, "--nj", "2", "--heads", "rnn", "--stage", "4", "--stop-stage", "5", "--upstream-ckpts", str(ckpt),
         "--upstream-mode", "frozen", "--chunk-context", "4")
    exp = rdir / "exp" / "sentiment" / "2class_rnn_tera_states-7_last"
    cfg = yaml.safe_load((exp / "config.yaml").read_text())
    assert cfg["input"]["chunk_context"] == 4 and cfg["input"]["layer"] == "last"
    assert (rdir / "exp" / "sentiment" / "2class_rnn_fbank" / "config.yaml").read_text() == fbank_cfg
    rows = parse_results_table((rdir / "RESULTS.md").read_text(), "RESULTS.md", SENTIMENT_TABLE)
    assert len(rows) == len(before) + 1 and all(r in rows for r in before), rows   # one row added, none changed
