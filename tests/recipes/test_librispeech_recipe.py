"""End-to-end runs of egs/librispeech/run.sh on the tiny synthetic corpus (the ESPnet mini_an4
pattern): stages 0-2, a rerun that does no work, then pre-training, dump, downstream and results
for one tiny upstream with a reduced step budget. The recipe runs from a copy of the recipe
directory under a path with spaces, so quoting and path resolution are exercised too."""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import yaml

from s3prl.data.kaldi_dir import DataDir, validate_data_dir
from s3prl.downstream.results import parse_results_table, parse_summary_table
from tests.conftest import link_recipe

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _recipe_copy(root: Path) -> Path:
    """A recipe dir whose files link to the real recipe, under a path with spaces."""
    return link_recipe("librispeech", root / "my recipes" / "egs" / "librispeech")


def _run(rdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # Run from somewhere else: run.sh must find its own directory.
    p = subprocess.run(["bash", str(rdir / "run.sh"), "--synth-preset", "tiny", "--nj", "2", *args],
                       cwd=str(rdir.parent.parent), env=env, capture_output=True, text=True, timeout=900)
    if check and p.returncode != 0:
        raise AssertionError(f"run.sh {' '.join(args)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}")
    return p


def _snapshot(d: Path) -> dict[str, int]:
    """mtimes of the outputs under `d` (lock files, which every run takes, left out)."""
    return {str(p.relative_to(d)): p.stat().st_mtime_ns for p in d.rglob("*")
            if p.is_file() and not p.name.endswith(".lock")}


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    rdir = _recipe_copy(tmp_path_factory.mktemp("recipe"))
    first = _run(rdir, "--stop-stage", "2")
    return rdir, first


def test_stages_0_to_2_and_rerun_is_noop(recipe):
    rdir, first = recipe
    data = rdir / "data" / "train-clean-100"
    validate_data_dir(data)  # with features
    dd = DataDir(data)
    assert len(dd.utts) == 24
    assert (data / "feats_dim").read_text().split()[0] == "80"
    # Features read back with kaldiio; frame counts follow Kaldi framing 1 + (N - 400) // 160.
    frames = dd.utt2num_frames
    # Absolute ark paths, through the directory with a space in its name.
    assert all(e.startswith("/") and "my recipes" in e for e in dd.feats_scp.values())
    for utt, entry in list(dd.feats_scp.items())[:5]:
        m = kaldiio.load_mat(entry)
        assert m.shape == (frames[utt], 80)
        assert np.isfinite(m).all()
    # CPC labels of the synthetic corpus have one id per feature frame.
    labels = {}
    for line in (rdir / "downloads" / "synth_tiny_seed1" / "cpc" / "converted_aligned_phones.txt").read_text().splitlines():
        utt, *ids = line.split()
        labels[utt] = ids
    assert set(labels) == set(dd.utts)
    assert all(len(labels[u]) == frames[u] for u in dd.utts)

    before = _snapshot(rdir / "data") | _snapshot(rdir / "downloads")
    second = _run(rdir, "--stop-stage", "2")
    after = _snapshot(rdir / "data") | _snapshot(rdir / "downloads")
    assert before == after, "a rerun of finished stages rewrote files"
    assert "skip" in (second.stdout + second.stderr).lower()


def test_unknown_option_is_an_error(recipe):
    rdir, _ = recipe
    p = _run(rdir, "--no-such-option", "1", check=False)
    assert p.returncode != 0
    assert "no-such-option" in p.stderr or "no_such_option" in p.stderr


SMALL = ("--upstreams", "tera", "--probe-seeds", "1337",
         "--pretrain-overrides", "runner.total_steps=20 runner.save_step=10 dataloader.max_timestep=300",
         "--downstream-overrides", "runner.total_steps=20 runner.dev_step=10")


@pytest.fixture(scope="module")
def full_run(recipe):
    rdir, _ = recipe
    _run(rdir, "--stage", "3", "--stop-stage", "7", *SMALL)
    return rdir


def test_pretrain_dump_downstream_results(full_run):
    rdir = full_run
    assert (rdir / "exp" / "tera_tiny" / "states-20.ckpt").is_file()
    dumps = sorted((rdir / "dump" / "tera_tiny").glob("layer-*/train-clean-100"))
    assert dumps, "no dumped layer dir"
    for dump in dumps:
        validate_data_dir(dump)
    text = (rdir / "RESULTS.md").read_text()
    rows = parse_results_table(text)
    # fbank, the tera layer, and for speakers also fbank with per-utterance CMVN; seed 1337
    assert sorted((r[0], r[1], r[4]) for r in rows) == [
        ("phone", "exp/tera_tiny", "1337"), ("phone", "fbank", "1337"), ("speaker", "exp/tera_tiny", "1337"),
        ("speaker", "fbank", "1337"), ("speaker", "fbank_uttcmvn", "1337")], text
    for cells in rows:
        dev, test = float(cells[5]), float(cells[6])
        assert 0.0 <= dev <= 100.0 and 0.0 <= test <= 100.0
        assert re.fullmatch(r"c:[0-9a-f]{4} f:[0-9a-f]{4} k:([0-9a-f]{4}|-)", cells[10]), cells
        assert cells[10].endswith("k:-") == (not cells[1].startswith("exp/")), cells
    # one corpus for all; the fbank rows read the same features
    assert len({r[10].split()[0] for r in rows}) == 1
    assert len({r[10] for r in rows if not r[1].startswith("exp/")}) == 1
    # Phone accuracy of a 20-step linear probe is above chance (1/41) for both inputs.
    phone = [r for r in rows if r[0] == "phone"]
    assert all(float(r[6]) > 100 / 41 for r in phone), phone
    # the two fbank speaker baselines differ in their CMVN only
    cfgs = {n: yaml.safe_load((rdir / "exp" / "downstream" / f"speaker_utterance_{n}" / "config.yaml").read_text())
            for n in ("fbank", "fbank_uttcmvn")}
    assert cfgs["fbank"]["dataloader"]["cmvn"] == "global" and cfgs["fbank_uttcmvn"]["dataloader"]["cmvn"] == "utterance"
    assert {k: v for k, v in cfgs["fbank"]["dataloader"].items() if k != "cmvn"} == \
        {k: v for k, v in cfgs["fbank_uttcmvn"]["dataloader"].items() if k != "cmvn"}
    # A rerun of the finished stages 3-6 does no work.
    before = _snapshot(rdir / "exp") | _snapshot(rdir / "dump")
    _run(rdir, "--stage", "3", "--stop-stage", "6", *SMALL)
    after = _snapshot(rdir / "exp") | _snapshot(rdir / "dump")
    changed = sorted(k for k in after if before.get(k) != after[k] and "/log/" not in f"/{k}")
    assert not changed, changed


def test_asr_with_the_upstream_fine_tuned_inside(full_run):
    # --asr-mode fine_tune: the recognizer runs the upstream on data/<set> itself (the dump's chunk
    # context, the config's CMVN and deltas on its states) and trains it; the fbank run is kept.
    rdir = full_run
    fbank = rdir / "exp" / "downstream" / "asr_bilstm_fbank" / "results.json"
    mtime = fbank.stat().st_mtime_ns
    _run(rdir, "--stage", "6", "--stop-stage", "7", "--asr-mode", "fine_tune", *SMALL)
    exp = rdir / "exp" / "downstream" / "asr_bilstm_tera_tiny_ft"
    rec = json.loads((exp / "results.json").read_text())
    assert rec["layer"] == "last+ft" and rec["steps"] == 20
    cfg = yaml.safe_load((exp / "config.yaml").read_text())
    assert cfg["input"]["fine_tune"] is True and cfg["input"]["chunk_context"] == 12
    assert cfg["inputs"]["on_the_fly"] is True and cfg["inputs"]["train"].endswith("/data/train-clean-100")
    assert fbank.stat().st_mtime_ns == mtime
    rows = [l for l in (rdir / "RESULTS.md").read_text().splitlines() if l.startswith("| asr")]
    assert any("| exp/tera_tiny | last+ft |" in r for r in rows), rows
    p = _run(rdir, "--asr-mode", "bogus", check=False)
    assert p.returncode != 0 and "--asr-mode 'bogus'" in p.stderr


def _ark_contents(scp: Path) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in kaldiio.load_scp(str(scp)).items()}


def test_same_seed_same_outputs(full_run, tmp_path):
    """A second copy of the recipe (stages 1-5 on the same corpus) gives identical features,
    checkpoint tensors, dumps and results (CPU, same seeds)."""
    import json

    import torch

    first = full_run
    second = _recipe_copy(tmp_path)
    corpus = first / "downloads" / "synth_tiny_seed1"
    _run(second, "--stage", "1", "--stop-stage", "5", "--asr", "false", "--corpus-dir", str(corpus), *SMALL)
    layers = [p.relative_to(first) for p in (first / "dump" / "tera_tiny").glob("layer-*/train-clean-100")]
    assert layers
    for scp in [Path("data/train-clean-100/feats.scp")] + [d / "feats.scp" for d in layers]:
        a, b = _ark_contents(first / scp), _ark_contents(second / scp)
        assert a.keys() == b.keys()
        assert all(np.array_equal(a[k], b[k]) for k in a), scp
    ca = torch.load(first / "exp/tera_tiny/states-20.ckpt", weights_only=True)
    cb = torch.load(second / "exp/tera_tiny/states-20.ckpt", weights_only=True)
    for key in ("Transformer", "SpecHead"):
        assert ca[key].keys() == cb[key].keys()
        assert all(torch.equal(ca[key][k], cb[key][k]) for k in ca[key]), key
    runs = sorted((first / "exp" / "downstream").glob("phone_*")) + sorted((first / "exp" / "downstream").glob("speaker_*"))
    runs = [r for r in runs if "_seed" not in r.name]
    assert len(runs) == 5
    for exp in runs:
        ra = json.loads((exp / "results.json").read_text())
        rb = json.loads((second / "exp" / "downstream" / exp.name / "results.json").read_text())
        for k in ("dev_accuracy", "test_accuracy", "best_step"):
            assert ra[k] == rb[k], (exp.name, k)
        # another clone, the same corpus, features and checkpoint tensors: the same fingerprints
        assert ra["fingerprints"] == rb["fingerprints"], exp.name


def test_probe_seeds_fold_into_mean_sd(full_run):
    """--probe-seeds "1337 2": the seed-1337 runs of full_run are reused as they are (plain dir
    names), seed 2 runs in <...>_seed2 dirs; RESULTS.md folds both into mean +- sd (n=2)."""
    rdir = full_run
    plain = rdir / "exp" / "downstream" / "speaker_utterance_fbank_uttcmvn" / "results.json"
    mtime = plain.stat().st_mtime_ns
    _run(rdir, "--stage", "5", "--stop-stage", "7", "--asr", "false", *SMALL, "--probe-seeds", "1337 2")  # the last wins
    assert plain.stat().st_mtime_ns == mtime
    names = sorted(p.name for p in (rdir / "exp" / "downstream").glob("*_seed2"))
    plains = sorted(p.name for p in (rdir / "exp" / "downstream").glob("[ps][hp]*") if "_seed" not in p.name)
    assert len(plains) == 5 and names == [f"{p}_seed2" for p in plains]
    assert "speaker_utterance_fbank_uttcmvn_seed2" in names and not list((rdir / "exp" / "downstream").glob("*_seed1337"))
    for n in names:
        rec = json.loads((rdir / "exp" / "downstream" / n / "results.json").read_text())
        first = json.loads((rdir / "exp" / "downstream" / n[:-len("_seed2")] / "results.json").read_text())
        assert rec["seed"] == rec["data_seed"] == 2 and first["seed"] == 1337
        assert rec["fingerprints"] == first["fingerprints"]          # same data, features, checkpoint
        assert rec["config_hash"] != first["config_hash"]
    text = (rdir / "RESULTS.md").read_text()
    assert len(parse_results_table(text)) == 10
    summary = parse_summary_table(text)
    assert len(summary) == 5 and all(r[4] == "1337,2" and r[6].endswith("(n=2)") for r in summary), summary
    tera = [r for r in summary if r[0] == "speaker" and r[1] == "exp/tera_tiny"][0]
    assert tera[7].startswith("fbank: ") and "; fbank_uttcmvn: " in tera[7] and "noise" in tera[7]


HYBRID = ("--hybrid", "true", "--stage", "9", "--stop-stage", "9", "--mono-iters", "6", "--mono-totgauss", "150",
          "--probe-seeds", "1337",   # one DNN per input here; two seeds fold in tests/recipes/test_timit_recipe.py
          "--downstream-overrides",
          "runner.total_steps=12 runner.dev_step=6 runner.save_step=6 head.hidden_size=32 decode.beam=5 decode.lmwts=[5,10]")


def test_hybrid_stage_fbank_and_an_upstream_on_the_fly(recipe, tmp_path):
    """Stage 9 (utils/recipe.sh recipe_hybrid) on the synthetic corpus of stages 0-2: lexicon, lang,
    MFCC copies of the data dirs (utils/copy_data_dir.sh --no-feats), monophone GMM, alignments,
    HCLG, then the DNN on fbank and, with --hybrid-mode weighted_sum, on an upstream run on the
    fly (a tiny random TERA standing for exp/tera_tiny: no pre-training needed); a rerun does no
    work; a bad --hybrid-mode stops before any stage. Then stage 8 without --kaldi-exp hands
    stage 9's alignments and graph to PyTorch-Kaldi (the cfg over the upstream's dump)."""
    from tests.conftest import write_tiny_tera

    rdir, _ = recipe
    write_tiny_tera(rdir / "exp" / "tera_tiny" / "states-7.ckpt")
    _run(rdir, *HYBRID, "--upstreams", "tera", "--hybrid-mode", "weighted_sum")
    for x in ("train-clean-100", "dev-clean", "test-clean"):
        mfcc = rdir / "data" / "mfcc" / x
        validate_data_dir(mfcc)
        assert (mfcc / "feats_dim").read_text().split()[0] == "39"
        assert (mfcc / "text").read_bytes() == (rdir / "data" / x / "text").read_bytes()
    gmm = json.loads((rdir / "exp" / "mono" / "results.json").read_text())
    assert gmm["frame_agreement"]["agreement"] > gmm["frame_agreement"]["majority_baseline"]
    for tag, layer in (("fbank", "last"), ("tera_tiny_ws", "weighted_sum")):
        rec = json.loads((rdir / "exp" / "hybrid" / f"dnn_{tag}" / "results.json").read_text())
        assert rec["task"] == "hybrid" and rec["steps"] == 12 and rec["layer"] == layer, rec
    rows = [l for l in (rdir / "RESULTS.md").read_text().splitlines() if l.startswith("| hybrid")]
    assert any(r.startswith("| hybrid_gmm | mfcc |") for r in rows), rows
    assert any("| exp/tera_tiny | weighted_sum |" in r for r in rows), rows
    before = _snapshot(rdir / "exp") | _snapshot(rdir / "data")
    _run(rdir, *HYBRID, "--upstreams", "tera", "--hybrid-mode", "weighted_sum")
    after = _snapshot(rdir / "exp") | _snapshot(rdir / "data")
    changed = sorted(k for k in after if before.get(k) != after[k] and "/log/" not in f"/{k}")
    assert not changed, changed
    p = _run(rdir, *HYBRID, "--hybrid-mode", "bogus", check=False)
    assert p.returncode == 1 and "--hybrid-mode must be one of: dump weighted_sum fine_tune, got 'bogus'" in p.stderr

    # stage 8 on stage 9's alignments: skipped without a Kaldi; with one (a stand-in root holding
    # the LibriSpeech scorer the cfg names) the cfg is written over the tera dump, and PyTorch-Kaldi's
    # runner then stops for want of its checkout / Kaldi's binaries
    stage8 = ("--stage", "8", "--stop-stage", "8", "--hybrid", "true", "--upstreams", "tera")
    env_kaldi = os.environ.pop("KALDI_ROOT", None)
    try:
        p = _run(rdir, *stage8)
        assert "Stage 8: skipped: PyTorch-Kaldi on stage 9's alignments needs a compiled Kaldi" in p.stderr
        _run(rdir, "--stage", "4", "--stop-stage", "4", "--upstreams", "tera")
        kaldi = tmp_path / "kaldi root"
        scorer = kaldi / "egs" / "librispeech" / "s5" / "local" / "score.sh"
        scorer.parent.mkdir(parents=True)
        (kaldi / "src").mkdir()
        scorer.write_text("#!/bin/sh\n")
        scorer.chmod(0o755)
        os.environ["KALDI_ROOT"] = str(kaldi)
        p = _run(rdir, *stage8, check=False)
    finally:
        os.environ.pop("KALDI_ROOT", None)
        if env_kaldi is not None:
            os.environ["KALDI_ROOT"] = env_kaldi
    assert p.returncode == 1 and "run_pytorch_kaldi.sh: " in p.stderr, p.stderr[-2000:]
    cfgs = list((rdir / "exp").glob("pytorch_kaldi_tera_tiny_layer-*/pytorch_kaldi.cfg"))
    assert len(cfgs) == 1, p.stderr[-2000:]
    cfg = cfgs[0].read_text()
    assert f"lab_folder={rdir / 'exp' / 'mono_ali_train'}" in cfg and f"lab_graph={rdir / 'exp' / 'mono' / 'graph'}" in cfg
