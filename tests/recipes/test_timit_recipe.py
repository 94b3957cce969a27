"""Smoke test of egs/timit/run.sh with its DEFAULT options on a tiny TIMIT-layout stand-in.

The stand-in has the real corpus layout (TIMIT/{TRAIN,TEST}/DR*/<speaker>/{SA1,SI*,SX*}.{WAV,PHN,
WRD,TXT}, NIST SPHERE audio) with 4 training speakers, 4 of Kaldi's 50 dev speakers and 4 of the
24 core-test speakers, two 1-second sentences each plus an SA sentence (which data prep drops):
enough for the recipe's default 4 jobs per set. Stages 0-3 (data, features, pre-training, dump) run
with every default -- wav format, feature config, pre-training config, layer, chunk context, the
dump device (``auto``) -- except the pre-training step budget (the 8000-step preset would take a
quarter of an hour); a default that cannot run on a fresh machine fails here. Stage 4 (frame
counts against Kaldi alignments) runs on a stand-in of a Kaldi egs/timit/s5 exp dir whose
alignments are keyed ``spk_utt`` as Kaldi's TIMIT recipe keys them. Stages 5-6 need a PyTorch-Kaldi
checkout and a compiled Kaldi (tests/downstream/test_pytorch_kaldi.py covers the cfg generator).
Stage 7 (the hybrid DNN-HMM without Kaldi, utils/recipe.sh recipe_hybrid) runs with the phone
lexicon local/timit_prepare_dict.sh makes from the stand-in's transcripts, two DNN seeds, and
scoring on the 39 phones.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import kaldiio
import numpy as np
import pytest

from s3prl.data.alignments import read_alignment_lengths
from s3prl.data.kaldi_dir import DataDir, validate_data_dir
from tests.conftest import link_recipe
from tests.data.test_timit import PHN, write_sphere
from tests.downstream.test_pytorch_kaldi import make_ali_dir, make_graph_dir

pytestmark = pytest.mark.slow

# (part, dialect region, speaker): train speakers are in neither list; dev from Kaldi's 50-speaker
# dev list, test from the 24-speaker core test set (s3prl.data.timit.DEV_SPEAKERS / CORE_TEST_SPEAKERS).
SPEAKERS = ([("TRAIN", "DR1", s) for s in ("FCJF0", "FDAW0", "MDPK0", "MRAI0")]
            + [("TEST", "DR1", s) for s in ("FAKS0", "FDAC1", "MJSW0", "MREB0")]
            + [("TEST", "DR1", s) for s in ("MDAB0", "MWBT0", "FELC0", "MTAS1")])
SENTENCES = ("SA1", "SI943", "SX47")
TRAIN_STEPS = 6


def make_timit_standin(root: Path) -> Path:
    """The stand-in corpus under root/TIMIT (deterministic: tones + noise per speaker)."""
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000.0
    for i, (part, dr, spk) in enumerate(SPEAKERS):
        d = root / "TIMIT" / part / dr / spk
        d.mkdir(parents=True)
        for k, utt in enumerate(SENTENCES):
            x = 6000 * np.sin(2 * np.pi * (150 + 20 * i + 40 * k) * t) + 800 * rng.standard_normal(len(t))
            write_sphere(d / f"{utt}.WAV", x.astype(np.int16))
            (d / f"{utt}.PHN").write_text("".join(f"{b} {e} {p}\n" for p, b, e in PHN))
            (d / f"{utt}.WRD").write_text("2000 5000 she\n5000 7000 had\n")
            (d / f"{utt}.TXT").write_text(f"0 {len(t)} She had.\n")
    return root / "TIMIT"


def _run(rdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run(["bash", str(rdir / "run.sh"), *args], cwd=str(rdir.parent), env=env,
                       capture_output=True, text=True, timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(f"run.sh {' '.join(args)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}")
    return p


def _recipe_copy(root: Path) -> Path:
    """egs/timit made of links to the real recipe files (its outputs land in the copy)."""
    return link_recipe("timit", root / "egs" / "timit")


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    root = tmp_path_factory.mktemp("timit")
    corpus = make_timit_standin(root / "corpus")
    rdir = _recipe_copy(root)
    p = _run(rdir, "--corpus-dir", str(corpus), "--stop-stage", "3",
             "--pretrain-overrides", f"runner.total_steps={TRAIN_STEPS}")
    return rdir, corpus, p


def test_stages_0_to_3_with_default_options(recipe):
    rdir, _, p = recipe
    sets = {}
    for name in ("train", "dev", "test"):
        d = rdir / "data" / name
        validate_data_dir(d)  # with features
        sets[name] = DataDir(d)
        assert len(sets[name].utts) == 8, name  # 4 speakers x 2: the SA sentences are dropped
        assert not any(u.endswith("-sa1") for u in sets[name].utts)
        assert (d / "feats_dim").read_text().split()[0] == "80"
    assert sets["dev"].speakers == ["faks0", "fdac1", "mjsw0", "mreb0"]
    assert sets["test"].speakers == ["felc0", "mdab0", "mtas1", "mwbt0"]
    # 1 s at 16 kHz: 1 + (16000 - 400) // 160 = 98 frames (Kaldi framing)
    assert set(sets["train"].utt2num_frames.values()) == {98}
    assert (rdir / "exp" / "tera_tiny" / f"states-{TRAIN_STEPS}.ckpt").is_file()
    # The dump ran with --device auto, resolved to the CPU here, for every set, 4 jobs each.
    logs = sorted((rdir / "dump" / "tera_tiny" / "log").rglob("extract.*.log"))
    assert len(logs) == 12, logs
    assert all("--device auto" in lg.read_text() for lg in logs)
    # layer=last: only the last of the 3 transformer layers (layer-0 is the input block)
    assert [d.name for d in (rdir / "dump" / "tera_tiny").glob("layer-*")] == ["layer-3"]
    for name, dd in sets.items():
        dump = rdir / "dump" / "tera_tiny" / "layer-3" / name
        validate_data_dir(dump)
        mats = {k: np.asarray(v) for k, v in kaldiio.load_scp(str(dump / "feats.scp")).items()}
        assert sorted(mats) == dd.utts
        assert all(m.shape == (98, 128) and np.isfinite(m).all() for m in mats.values())


def test_alignment_check_against_a_kaldi_exp_standin(recipe, tmp_path):
    """Stage 4 with a stand-in Kaldi exp (tri3_ali{,_dev,_test} keyed spk_utt, tri3/graph)."""
    rdir, corpus, _ = recipe
    kaldi_exp = tmp_path / "kaldi exp"
    for name, ali in (("train", "tri3_ali"), ("dev", "tri3_ali_dev"), ("test", "tri3_ali_test")):
        frames = DataDir(rdir / "dump" / "tera_tiny" / "layer-3" / name).utt2num_frames
        make_ali_dir(kaldi_exp / ali, {u.replace("-", "_"): n for u, n in frames.items()})
    make_graph_dir(kaldi_exp / "tri3" / "graph")
    _run(rdir, "--corpus-dir", str(corpus), "--kaldi-exp", str(kaldi_exp), "--stage", "4", "--stop-stage", "4")
    for name in ("train", "dev", "test"):
        frames = DataDir(rdir / "dump" / "tera_tiny" / "layer-3" / name).utt2num_frames
        assert read_alignment_lengths(rdir / "exp" / f"ali_{name}") == dict(frames)


def test_hybrid_stage_option_errors(tmp_path):
    """Stage 7's file options are checked before any stage writes anything: a missing --lexicon
    or --scoring-map file, or a bad --hybrid-mode, is a one-line error."""
    rdir = _recipe_copy(tmp_path)
    for extra, msg in ((("--lexicon", "no such.txt"), f"error: --lexicon {rdir.parent}/no such.txt: no such file"),
                       (("--scoring-map", "conf/no such.map"), "error: --scoring-map conf/no such.map: no such file")):
        p = _run(rdir, "--hybrid", "true", *extra, check=False)
        assert p.returncode == 1, p.stderr
        lines = [l for l in p.stderr.splitlines() if l.strip()]
        assert len(lines) == 1 and msg in lines[0], p.stderr
        assert not any((rdir / d).exists() for d in ("data", "exp", "dump")), sorted(rdir.iterdir())
    p = _run(rdir, "--hybrid", "true", "--hybrid-mode", "bogus", check=False)
    assert p.returncode == 1 and "--hybrid-mode must be one of: dump weighted_sum fine_tune" in p.stderr


def test_timit_prepare_dict(tmp_path):
    """local/timit_prepare_dict.sh (Kaldi s5's dict step): each phone of the texts a word, sorted,
    plus <UNK> SPN; a rerun with the same phones leaves the file alone; a missing text is an error."""
    rdir = _recipe_copy(tmp_path)
    for s, text in (("train", "a1 sil aa b\na2 aa ix\n"), ("dev", "d1 zh  sil\n")):
        (tmp_path / "d" / s).mkdir(parents=True)
        (tmp_path / "d" / s / "text").write_text(text)
    out = tmp_path / "dict dir" / "lexicon.txt"
    script = rdir / "local" / "timit_prepare_dict.sh"
    subprocess.run(["bash", str(script), str(out), str(tmp_path / "d" / "train"), str(tmp_path / "d" / "dev")],
                   check=True)
    assert out.read_text() == "aa aa\nb b\nix ix\nsil sil\nzh zh\n<UNK> SPN\n"
    mtime = out.stat().st_mtime_ns
    subprocess.run(["bash", str(script), str(out), str(tmp_path / "d" / "train"), str(tmp_path / "d" / "dev")],
                   check=True)
    assert out.stat().st_mtime_ns == mtime and sorted(p.name for p in out.parent.iterdir()) == ["lexicon.txt"]
    p = subprocess.run(["bash", str(script), str(out), str(tmp_path / "nothing")], capture_output=True, text=True)
    assert p.returncode == 1 and "nothing/text: no such file" in p.stderr and out.read_text().startswith("aa aa")


def test_hybrid_stage_on_the_standin(recipe, tmp_path):
    """Stage 7 over stages 0-3: the phones of the transcripts as words, a phone bigram, the
    monophone GMM on MFCC, then the DNN on fbank and on the dumped tera layer."""
    rdir, corpus, _ = recipe
    phones = sorted({p for s in ("train", "dev", "test")
                     for line in (rdir / "data" / s / "text").read_text().splitlines() for p in line.split()[1:]})
    _run(rdir, "--corpus-dir", str(corpus), "--hybrid", "true", "--stage", "7",
         "--stop-stage", "7", "--mono-iters", "4", "--mono-totgauss", "60", "--probe-seeds", "1337 2",
         "--downstream-overrides",
         "runner.total_steps=6 runner.dev_step=3 runner.save_step=3 head.hidden_size=16 decode.beam=5 "
         "decode.lmwts=[5]")
    # no --lexicon: data/local/dict/lexicon.txt, each phone of the transcripts a word
    lexicon = (rdir / "data" / "local" / "dict" / "lexicon.txt").read_text()
    assert lexicon == "".join(f"{p} {p}\n" for p in phones) + "<UNK> SPN\n"
    arpa = (rdir / "data" / "lang_test_tg" / "lm.arpa").read_text()
    assert "ngram 2=" in arpa and "ngram 3=" not in arpa   # a phone bigram, as Kaldi's TIMIT s5
    gmm = json_load(rdir / "exp" / "mono" / "results.json")
    assert gmm["mono"]["aligned"] == 8 and "frame_agreement" not in gmm
    # scored on the 39 phones (conf/phones.48-39.map, the default), the decoder's 48 kept aside
    assert gmm["inputs"]["scoring_map"] == "conf/phones.48-39.map"
    phones39 = set(decode_map(rdir).values())
    raw = {p for line in (rdir / "data" / "test" / "text").read_text().splitlines() for p in line.split()[1:]}
    assert raw - phones39, "the stand-in's test text should use 48-only phones, or the map is not exercised"
    for d in (rdir / "exp" / "mono" / "decode_test", rdir / "exp" / "hybrid" / "dnn_fbank" / "decode_test"):
        ref = {p for line in (d / "ref.txt").read_text().splitlines() for p in line.split()[1:]}
        assert ref <= phones39 and not ref & {"vcl", "cl", "ix", "ao"}, sorted(ref - phones39)
        assert (d / "hyp_unmapped.txt").is_file()
    assert json_load(rdir / "exp" / "hybrid" / "dnn_fbank" / "results.json")["scoring_map"] == "conf/phones.48-39.map"
    for tag, layer in (("fbank", "last"), ("tera_tiny_layer-3", "3")):
        for seed, suffix in ((1337, ""), (2, "_seed2")):   # --probe-seeds "1337 2": one DNN per seed
            rec = json_load(rdir / "exp" / "hybrid" / f"dnn_{tag}{suffix}" / "results.json")
            assert rec["task"] == "hybrid" and rec["steps"] == 6 and rec["layer"] == layer and rec["lmwt"] == 5, rec
            assert rec["seed"] == seed and rec["data_seed"] == seed, rec
            hyp = rdir / "exp" / "hybrid" / f"dnn_{tag}{suffix}" / "decode_test" / "hyp.txt"
            assert len(hyp.read_text().splitlines()) == 8
    # RESULTS.md: one row per run with its seed, and the runs of each input folded to mean +- sd
    from s3prl.downstream.hybrid import HYBRID_TABLE
    from s3prl.downstream.results import parse_results_table, parse_summary_table

    md = (rdir / "RESULTS.md").read_text()
    runs = {(r[1], r[4]) for r in parse_results_table(md, spec=HYBRID_TABLE) if r[0] == "hybrid"}
    assert runs == {("fbank", "1337"), ("fbank", "2"), ("exp/tera_tiny", "1337"), ("exp/tera_tiny", "2")}, runs
    summary = {r[1]: r for r in parse_summary_table(md, spec=HYBRID_TABLE) if r[0] == "hybrid"}
    assert summary["fbank"][4] == "1337,2" and "(n=2)" in summary["fbank"][6], summary
    assert summary["exp/tera_tiny"][7].startswith("fbank: "), summary


def decode_map(rdir: Path) -> dict:
    from s3prl.hybrid.decode import read_scoring_map

    return read_scoring_map(rdir / "conf" / "phones.48-39.map")


def json_load(path: Path) -> dict:
    import json

    return json.loads(path.read_text())
