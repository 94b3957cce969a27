"""egs/librispeech/run.sh's optional stages over the probes, on the tiny synthetic corpus with one
tiny upstream (APC, 10 pre-training steps): stage 10 (--curve-steps: stage 3 keeps the listed
checkpoints, stage 10 dumps and probes each, PNG + JSON + RESULTS.md table; a step that was not
kept is a one-line error) and stage 11 (--eval-corpus-seed: a second synthetic corpus probed with
the frozen upstream, its own table)."""
from __future__ import annotations

import json

import pytest

from s3prl.data.kaldi_dir import DataDir
from s3prl.downstream import curves, transfer
from s3prl.downstream.results import CLASSIFICATION, parse_results_table
from tests.recipes.test_librispeech_recipe import _recipe_copy, _run, _snapshot

pytestmark = pytest.mark.slow

SMALL = ("--upstreams", "apc", "--asr", "false", "--speaker-heads", "",
         "--pretrain-overrides", "runner.total_steps=10 runner.save_step=10",
         "--downstream-overrides", "runner.total_steps=20 runner.dev_step=10")


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """Stages 0-3 with --curve-steps "5 10 40": APC keeps states-5 (not a multiple of save_step)."""
    rdir = _recipe_copy(tmp_path_factory.mktemp("curves"))
    _run(rdir, "--stop-stage", "3", "--curve-steps", "5,10 40", *SMALL)
    return rdir


def test_learning_curve_stage(pretrained):
    rdir = pretrained
    assert sorted(p.name for p in (rdir / "exp" / "apc_tiny").glob("states-*.ckpt")) == \
        ["states-10.ckpt", "states-5.ckpt"]
    ckpts = _snapshot(rdir / "exp" / "apc_tiny")
    _run(rdir, "--stage", "10", "--stop-stage", "10", "--curve-steps", "5 10 40", *SMALL)
    assert _snapshot(rdir / "exp" / "apc_tiny") == ckpts          # probing re-trains nothing
    cdir = rdir / "exp" / "curves"
    assert (cdir / "phone_linear.png").read_bytes()[:4] == b"\x89PNG"
    curve = json.loads((cdir / "phone_linear.json").read_text())
    # one line for apc (steps 5 and 10; 40 is past its total_steps), numbers = the probes' results.json
    (line,) = curve["curves"]
    assert line["upstream"] == "apc_tiny" and [p["step"] for p in line["points"]] == [5, 10]
    for p in line["points"]:
        rec = json.loads((rdir / p["exp"] / "results.json").read_text())
        assert p["exp"] == f"exp/curves/phone_linear_apc_tiny_step{p['step']}_layer-2"
        assert (p["dev"], p["test"]) == (rec["dev_accuracy"], rec["test_accuracy"])
        assert rec["upstream"] == f"apc_tiny/states-{p['step']}" and rec["steps"] == 20
        assert 100 / 41 < 100 * p["test"] <= 100
    fb = json.loads((rdir / "exp" / "downstream" / "phone_linear_fbank" / "results.json").read_text())
    assert curve["fbank"]["test"] == fb["test_accuracy"]
    # each step its own dump, made from its own checkpoint
    for s in (5, 10):
        info = json.loads((rdir / "dump" / f"apc_tiny_step{s}" / "upstream.json").read_text())
        assert info["path"].endswith(f"exp/apc_tiny/states-{s}.ckpt")
    text = (rdir / "RESULTS.md").read_text()
    rows = parse_results_table(text, "RESULTS.md", curves.TABLE)
    assert [r[2:5] for r in rows] == [["apc_tiny", "2", "5"], ["apc_tiny", "2", "10"], ["fbank", "last", "-"]]
    assert parse_results_table(text, "RESULTS.md", CLASSIFICATION) == []   # stage 5's table is not written here

    # a step pre-training did not keep: one line naming the file, nothing written
    before = _snapshot(rdir / "exp") | _snapshot(rdir / "dump") | {"md": (rdir / "RESULTS.md").stat().st_mtime_ns}
    p = _run(rdir, "--stage", "10", "--stop-stage", "10", "--curve-steps", "7", *SMALL, check=False)
    assert p.returncode == 1
    assert p.stderr.strip().splitlines()[-1].endswith(
        "exp/apc_tiny/states-7.ckpt: no checkpoint at pre-training step 7 (kept: 5 10); pre-train again with "
        "runner.keep_steps listing it (run.sh: move exp/apc_tiny aside, rerun stage 3 with --curve-steps)"), p.stderr
    after = _snapshot(rdir / "exp") | _snapshot(rdir / "dump") | {"md": (rdir / "RESULTS.md").stat().st_mtime_ns}
    assert {k: v for k, v in after.items() if "/log/" not in f"/{k}"} == \
        {k: v for k, v in before.items() if "/log/" not in f"/{k}"}


def test_second_corpus_stage(pretrained):
    rdir = pretrained
    ckpts = _snapshot(rdir / "exp" / "apc_tiny")
    _run(rdir, "--stage", "11", "--stop-stage", "11", "--eval-corpus-seed", "2", *SMALL)
    assert _snapshot(rdir / "exp" / "apc_tiny") == ckpts          # no re-training
    tag = "eval_synth_tiny_seed2"
    first, second = DataDir(rdir / "data" / "train-clean-100"), DataDir(rdir / "data" / tag / "train-clean-100")
    assert len(second.utts) == len(first.utts)
    assert all("synth_tiny_seed2" in v for v in second.wav_scp.values())
    assert (rdir / "data" / tag / "train-clean-100" / "feats.scp").is_file()
    info = json.loads((rdir / "dump" / f"apc_tiny_{tag}" / "upstream.json").read_text())
    assert info["path"].endswith("exp/apc_tiny/states-10.ckpt")       # the final checkpoint of stage 3
    rows = parse_results_table((rdir / "RESULTS.md").read_text(), "RESULTS.md", transfer.TABLE)
    assert [r[:5] for r in rows] == [[tag, "phone", "exp/apc_tiny", "2", "linear"],
                                     [tag, "phone", "fbank", "last", "linear"]]
    rec = json.loads((rdir / "exp" / f"downstream_{tag}" / "phone_linear_apc_tiny_layer-2" / "results.json").read_text())
    fb = json.loads((rdir / "exp" / f"downstream_{tag}" / "phone_linear_fbank" / "results.json").read_text())
    assert rows[0][6] == f"{100 * rec['test_accuracy']:.2f}"
    assert rows[0][7] == f"{100 * (rec['test_accuracy'] - fb['test_accuracy']):+.2f}"
    # the reference on the pre-training corpus: the probe of the same name under exp/downstream
    # (stage 10 ran the fbank one when the tests run in order; stage 5 never ran the apc one)
    ref = rdir / "exp" / "downstream" / "phone_linear_fbank" / "results.json"
    assert rows[1][8] == (f"{100 * json.loads(ref.read_text())['test_accuracy']:.2f}" if ref.is_file() else "-")
    assert rows[0][8] == "-"
