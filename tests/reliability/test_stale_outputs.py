"""Stale and partial outputs are never taken for complete (skip-if-complete covers the identity of
every input; a dump is complete as a whole; plots belong to a finished pre-training run; a refused
run touches nothing of the lock holder's), and three error paths of the shell verbs.

Kaldi's steps/make_fbank.sh and friends redo a stage whenever asked; our verbs skip a complete
output, so each completion record must say from which inputs it was made."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.reliability.conftest import PRETRAIN_OVERRIDES, pretrain_cmd
from tests.reliability.harness import PY, REPO, ark_contents, cli, env, tmp_leftovers, verb
from tests.reliability.test_recipe_options import _recipe_copy

FEATS = REPO / "utils" / "compute_feats.sh"
DUMP = REPO / "utils" / "dump_feats.sh"


def _copy(wav_dir: Path, d: Path) -> Path:
    """A copy of the session's data dir (without splits other tests made in it) under `d`."""
    shutil.copytree(wav_dir, d, ignore=shutil.ignore_patterns("split*", ".lock"))
    (d / "wav.scp").write_text((d / "wav.scp").read_text().replace(str(wav_dir), str(d)))
    return d


def _mtimes(d: Path) -> dict[str, int]:
    return {str(p.relative_to(d)): p.stat().st_mtime_ns for p in sorted(d.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock") and ".log" not in p.name}


def _swap_first_audio(data: Path) -> tuple[str, str]:
    """Point the first utterance of wav.scp at the last utterance's audio; returns (utt, other)."""
    lines = (data / "wav.scp").read_text().splitlines()
    first, last = lines[0].split(" ", 1), lines[-1].split(" ", 1)
    lines[0] = f"{first[0]} {last[1]}"
    (data / "wav.scp").write_text("\n".join(lines) + "\n")
    return first[0], last[0]


# ------------------------------------------------------------------------- defect 2: features
def test_compute_feats_redone_when_an_input_changed_and_skipped_when_not(tmp_path, wav_dir):
    data = _copy(wav_dir, tmp_path / "data")
    cmd = ["bash", FEATS, "--nj", "2", data, tmp_path / "log", tmp_path / "f"]
    assert cli(cmd).returncode == 0
    before = ark_contents(data / "feats.scp")
    # unchanged inputs (even touched: content decides): skip, nothing rewritten
    os.utime(data / "wav.scp")
    snap = _mtimes(data)
    r = cli(cmd)
    assert r.returncode == 0 and "skip:" in r.stdout, r.stderr
    assert _mtimes(data) == snap
    # wav.scp edited after the features were made: recomputed, the utterance now has the other audio
    utt, other = _swap_first_audio(data)
    r = cli(cmd)
    assert r.returncode == 0 and "skip:" not in r.stdout and "succeeded" in r.stdout, r.stdout + r.stderr
    after = ark_contents(data / "feats.scp")
    np.testing.assert_array_equal(after[utt], before[other])
    assert not np.array_equal(after[utt], before[utt])
    assert {u: m for u, m in after.items() if u != utt}.keys() == {u for u in before if u != utt}
    assert cli(cmd).stdout.startswith("compute_feats.sh: skip:")
    # utt2spk + spk2utt edited (speaker 1004 renamed): new CMVN keys, not the old ones
    for name in ("utt2spk", "spk2utt"):
        (data / name).write_text((data / name).read_text().replace(" 1004\n", " 1004b\n").replace("1004 ", "1004b "))
    r = cli(cmd)
    assert r.returncode == 0 and "skip:" not in r.stdout, r.stdout + r.stderr
    cmvn = (data / "cmvn.scp").read_text()
    assert "1004b " in cmvn and "\n1004 " not in "\n" + cmvn
    assert tmp_leftovers(data) == [] and tmp_leftovers(tmp_path / "f") == []


# ----------------------------------------------------------------------------- defect 2: dump
def test_dump_redone_when_an_input_changed_and_skipped_when_not(tmp_path, wav_dir, tiny_ckpt):
    data = _copy(wav_dir, tmp_path / "train")
    dump = tmp_path / "dump"
    cmd = ["bash", DUMP, "--nj", "2", "--layer", "last", tiny_ckpt, data, dump]
    r = cli(cmd)
    assert r.returncode == 0, r.stderr
    scp = dump / "layer-3" / "train" / "feats.scp"
    before = ark_contents(scp)
    snap = _mtimes(dump / "layer-3")
    r = cli(cmd)
    assert r.returncode == 0 and "skip:" in r.stdout and _mtimes(dump / "layer-3") == snap
    # a complete dump made before merge linked `last`: the skip adds the link, nothing else
    (dump / "last").unlink()
    r = cli(cmd)
    assert r.returncode == 0 and "skip:" in r.stdout and os.readlink(dump / "last") == "layer-3"
    assert _mtimes(dump / "layer-3") == snap
    utt, other = _swap_first_audio(data)
    r = cli(cmd)
    assert r.returncode == 0 and "skip:" not in r.stdout, r.stdout + r.stderr
    after = ark_contents(scp)
    np.testing.assert_array_equal(after[utt], before[other])
    assert (dump / "layer-3" / "train" / "wav.scp").read_text() == (data / "wav.scp").read_text()
    # text is copied into the dumped dir: an edited text is not left stale there either
    (data / "text").write_text((data / "text").read_text().replace(" ", " EDITED ", 1))
    r = cli(cmd)
    assert r.returncode == 0 and "skip:" not in r.stdout
    assert (dump / "layer-3" / "train" / "text").read_text() == (data / "text").read_text()
    assert cli(cmd).stdout.startswith("dump_feats.sh: skip:")


# ------------------------------------------------------------- defect 3: a dump killed between layers
@pytest.fixture(scope="module")
def full_dump(tmp_path_factory, wav_dir, tiny_ckpt):
    """A recipe-like tree: exp/tera_tiny (the checkpoint), data/train, dump/tera_tiny (--layer all)."""
    root = tmp_path_factory.mktemp("dumpall")
    (root / "exp" / "tera_tiny").mkdir(parents=True)
    shutil.copy(tiny_ckpt, root / "exp" / "tera_tiny" / tiny_ckpt.name)
    data = _copy(wav_dir, root / "data" / "train")
    r = cli(["bash", DUMP, "--nj", "2", "--layer", "all", root / "exp" / "tera_tiny", data, root / "dump" / "tera_tiny"])
    assert r.returncode == 0, r.stderr
    return root


def _killed_between_layers(full_dump: Path, tmp_path: Path) -> Path:
    """The on-disk state of stage 4 killed after layer-2/train was renamed into place and before
    layer-3/train was: merge removed the set's completion record when it started and builds the
    layer dirs in order, so layer-0..2 are complete, layer-3 is absent, no record."""
    root = tmp_path / "r"
    shutil.copytree(full_dump, root, symlinks=True)
    dump = root / "dump" / "tera_tiny"
    (dump / "complete" / "train.json").unlink()
    shutil.rmtree(dump / "layer-3" / "train")
    return root


def test_dump_record_lists_every_layer(full_dump):
    rec = json.loads((full_dump / "dump" / "tera_tiny" / "complete" / "train.json").read_text())
    assert rec["layers"] == [0, 1, 2, 3] and rec["num_hidden_states"] == 4 and rec["set"] == "train"
    assert set(rec["inputs"]) >= {"wav.scp", "utt2spk", "spk2utt", "text"}
    r = cli(verb("extract", "--mode", "layers", "--upstream", full_dump / "exp" / "tera_tiny", "--layer", "last",
                 full_dump / "dump" / "tera_tiny", "train"))
    assert r.returncode == 0 and r.stdout == f"{full_dump / 'dump' / 'tera_tiny' / 'layer-3'}\n", r.stderr


def test_killed_dump_is_not_used_by_stage_5_and_is_redone(tmp_path, full_dump, cpc_set):
    root = _killed_between_layers(full_dump, tmp_path)
    dump = root / "dump" / "tera_tiny"
    # "last" is layer 3 (from the checkpoint), not layer-2, the highest dir that exists
    r = cli(verb("extract", "--mode", "layers", "--upstream", root / "exp" / "tera_tiny", "--layer", "last", dump, "train"))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip().splitlines()[-1] == (f"extract.py: error: {dump}: the dump of 'train' is incomplete or "
                                                 f"absent (no complete/train.json); run utils/dump_feats.sh for it"), r.stderr
    # the recipe's stage 5 stops before any training, naming the set
    rdir = _recipe_copy(tmp_path, "librispeech")
    for name in ("exp", "dump", "data"):
        os.symlink(root / name, rdir / name)
    r = subprocess.run(["bash", rdir / "run.sh", "--stage", "5", "--stop-stage", "5", "--upstreams", "tera",
                        "--train-set", "train", "--asr", "false", "--layer", "last", "--cpc-dir", str(cpc_set.labels)],
                       cwd=rdir, env=env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "the dump of 'train' is incomplete" in r.stderr and "Stage 5:" not in r.stderr, r.stderr
    assert not (root / "exp" / "downstream").exists()
    # a downstream run pointed straight at the surviving layer-2 dir refuses it too
    from s3prl.dump import read_dump_info
    from s3prl.errors import UserError

    with pytest.raises(UserError, match="part of an incomplete dump"):
        read_dump_info(dump / "layer-2" / "train")
    # rerun of stage 4: not a skip; every layer and the record come back
    r = cli(["bash", DUMP, "--nj", "2", "--layer", "all", root / "exp" / "tera_tiny", root / "data" / "train", dump])
    assert r.returncode == 0 and "skip:" not in r.stdout, r.stdout + r.stderr
    assert json.loads((dump / "complete" / "train.json").read_text())["layers"] == [0, 1, 2, 3]
    assert (dump / "layer-3" / "train" / "feats.scp").read_text() == \
        (full_dump / "dump" / "tera_tiny" / "layer-3" / "train" / "feats.scp").read_text().replace(str(full_dump), str(root))
    assert read_dump_info(dump / "layer-2" / "train")["layer"] == 2


def test_failed_dump_of_one_upstream_fails_stage_4(tmp_path, full_dump, cpc_set):
    """Stage 4 runs the upstreams' dumps side by side (bg_run): one that fails (no checkpoint for
    mockingjay) makes stage 4 itself exit non-zero (--stop-stage 4: no later stage's check stands
    in for it), naming the failed dump; the other upstream's dump still completes."""
    root = tmp_path / "r"
    shutil.copytree(full_dump, root, symlinks=True, ignore=shutil.ignore_patterns("dump"))
    (root / "dump").mkdir()
    rdir = _recipe_copy(tmp_path, "librispeech")
    for name in ("exp", "dump", "data"):
        os.symlink(root / name, rdir / name)
    r = subprocess.run(["bash", rdir / "run.sh", "--stage", "4", "--stop-stage", "4", "--upstreams", "mockingjay tera",
                        "--nj", "2", "--train-set", "train", "--asr", "false", "--layer", "last",
                        "--cpc-dir", str(cpc_set.labels)],
                       cwd=rdir, env=env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout + r.stderr
    assert "bg_wait: 1 parallel step(s) failed" in out and "recipe_dump Stage 4 exp/mockingjay_tiny" in out, out
    assert json.loads((root / "dump" / "tera_tiny" / "complete" / "train.json").read_text())["layers"] == [3]
    assert not (root / "dump" / "mockingjay_tiny" / "complete").exists()


def test_last_links_the_checkpoints_last_layer(tmp_path, full_dump):
    """merge points dump/<name>/last at layer-<last hidden state> (relative); a set read through it
    is checked for completeness like its layer-<k> dir."""
    from s3prl.dump import read_dump_info
    from s3prl.errors import UserError

    dump = full_dump / "dump" / "tera_tiny"
    assert (dump / "last").is_symlink() and os.readlink(dump / "last") == "layer-3"
    assert read_dump_info(dump / "last" / "train")["layer"] == 3
    assert (dump / "last" / "train" / "feats.scp").read_text() == (dump / "layer-3" / "train" / "feats.scp").read_text()
    # killed before the set's completion record was written: refused through last too
    root = tmp_path / "r"
    shutil.copytree(full_dump, root, symlinks=True)
    (root / "dump" / "tera_tiny" / "complete" / "train.json").unlink()
    assert os.readlink(root / "dump" / "tera_tiny" / "last") == "layer-3"      # relative: moves with the tree
    with pytest.raises(UserError, match="last/train: part of an incomplete dump"):
        read_dump_info(root / "dump" / "tera_tiny" / "last" / "train")


def test_last_is_resolved_from_the_checkpoint_not_from_existing_dirs(tmp_path, wav_dir, tiny_ckpt):
    data = _copy(wav_dir, tmp_path / "train")
    dump = tmp_path / "dump"
    assert cli(["bash", DUMP, "--nj", "1", "--layer", "1", tiny_ckpt, data, dump]).returncode == 0
    r = cli(verb("extract", "--mode", "layers", "--upstream", tiny_ckpt, "--layer", "last", dump, "train"))
    assert r.returncode == 1 and "layer 3 of 'train' was not dumped (dumped: 1)" in r.stderr, r.stderr
    r = cli(verb("extract", "--mode", "layers", "--upstream", tiny_ckpt, "--layer", "1", dump, "train"))
    assert r.returncode == 0 and r.stdout == f"{dump / 'layer-1'}\n"
    assert not os.path.lexists(dump / "last")   # the last hidden state (3) was not dumped: no link
    # asking for another set that was never dumped is an error naming it
    r = cli(verb("extract", "--mode", "layers", "--upstream", tiny_ckpt, "--layer", "1", dump, "train", "dev"))
    assert r.returncode == 1 and "the dump of 'dev' is incomplete or absent" in r.stderr


# ----------------------------------------------------------- defect 4: the learning curve of a finished run
def test_learning_curve_redrawn_when_killed_before_the_plot(tmp_path, wav_dir, tiny_ckpt):
    exp = tmp_path / "tera"
    shutil.copytree(tiny_ckpt.parent, exp)
    curve = exp / "plots" / "learning_curve.png"
    original = curve.read_bytes()
    curve.unlink()  # killed after states-12.ckpt was written, before the plot
    r = cli(pretrain_cmd(wav_dir, exp))
    assert r.returncode == 0, r.stderr
    assert "pre-training is complete" in r.stderr and "learning_curve.png: redrawn from states-12.ckpt" in r.stderr
    assert curve.read_bytes() == original
    mtime = curve.stat().st_mtime_ns
    r = cli(pretrain_cmd(wav_dir, exp))
    assert r.returncode == 0 and "redrawn from" not in r.stderr and curve.stat().st_mtime_ns == mtime


# ------------------------------------------------------------- defect 5: a refused run touches nothing
def test_refused_pretrain_sh_leaves_the_holders_log_alone(tmp_path, wav_dir):
    exp = tmp_path / "exp"
    ov = [*PRETRAIN_OVERRIDES, "runner.total_steps=150", "runner.save_step=50"]
    cmd = ["bash", REPO / "utils" / "pretrain.sh", "--config", REPO / "egs/librispeech/conf/tera_tiny.yaml",
           *[a for o in ov for a in ("--override", o)], wav_dir, exp]
    first = subprocess.Popen(list(map(str, cmd)), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while not ((exp / ".lock").is_file() and "pid=" in (exp / ".lock").read_text()):
        assert time.monotonic() - t0 < 120 and first.poll() is None
        time.sleep(0.02)
    log_before = (exp / "log" / "pretrain.log").read_text()
    r = cli(cmd)
    assert r.returncode == 1 and "locked by another run" in r.stderr and f"pid={first.pid}" in r.stderr, r.stderr
    now = (exp / "log" / "pretrain.log").read_text()
    assert now.startswith(log_before) and "# Ended (code 1)" not in now
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    log = (exp / "log" / "pretrain.log").read_text()
    assert log.startswith(log_before) and log.count("# Ended") == 1 and "# Ended (code 0)" in log
    assert (exp / "states-150.ckpt").is_file()


def test_refused_pretrain_sh_while_a_direct_verb_run_holds_the_exp_dir(tmp_path, wav_dir):
    import fcntl

    exp = tmp_path / "exp"
    (exp / "log").mkdir(parents=True)
    (exp / "log" / "pretrain.log").write_text("an earlier run's log\n")
    with open(exp / ".lock", "a+") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        holder.write("host=elsewhere pid=4242 started=now pretrain\n")
        holder.flush()
        r = cli(["bash", REPO / "utils" / "pretrain.sh", "--config", REPO / "egs/librispeech/conf/tera_tiny.yaml",
                 wav_dir, exp])
    assert r.returncode == 1 and "locked by another run" in r.stderr and "pid=4242" in r.stderr, r.stderr
    assert (exp / "log" / "pretrain.log").read_text() == "an earlier run's log\n"
    assert sorted(p.name for p in exp.iterdir()) == [".lock", "log"]


# ------------------------------------------------------------------------------- messages
def test_dump_feats_sh_works_without_path_sh(tmp_path, wav_dir, tiny_ckpt):
    """No venv on PATH, no PYTHONPATH, called from another directory: like compute_feats.sh."""
    bare = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "LC_ALL": "C",
            "OMP_NUM_THREADS": "1"}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = subprocess.run(["bash", str(DUMP), "--nj", "1", "--layer", "last", str(tiny_ckpt), str(wav_dir),
                        str(tmp_path / "dump")], cwd=elsewhere, env=bare, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert len((tmp_path / "dump" / "layer-3" / wav_dir.name / "feats.scp").read_text().splitlines()) == 8
    r = subprocess.run(["bash", str(FEATS), "--nj", "1", str(_copy(wav_dir, tmp_path / "d2")), str(tmp_path / "l"),
                        str(tmp_path / "f")], cwd=elsewhere, env=bare, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


def _tiny_librispeech(root: Path) -> Path:
    """LibriSpeech/dev-clean with 2 readers x 1 chapter x 1 utterance, under a path with spaces."""
    rng = np.random.default_rng(0)
    ls = root / "my corpus" / "LibriSpeech"
    for reader in ("1001", "1002"):
        ch = ls / "dev-clean" / reader / "10"
        ch.mkdir(parents=True)
        sf.write(str(ch / f"{reader}-10-0000.flac"), (0.1 * rng.standard_normal(8000)).astype(np.float32), 16000,
                 subtype="PCM_16")
        (ch / f"{reader}-10.trans.txt").write_text(f"{reader}-10-0000 HELLO WORLD\n")
    (ls / "SPEAKERS.TXT").write_text("; ID | SEX | SUBSET | MINUTES | NAME\n1001 | F | dev-clean | 1.0 | A\n"
                                     "1002 | M | dev-clean | 1.0 | B\n")
    return ls.parent


def test_prepare_librispeech_pipe_quotes_paths_with_spaces(tmp_path):
    if shutil.which("flac") is None:
        pytest.fail("the flac command line tool is needed for --wav-format pipe (apt-get install flac)")
    corpus = _tiny_librispeech(tmp_path)
    data = tmp_path / "data" / "dev-clean"
    r = cli(verb("prepare_librispeech", "--wav-format", "pipe", corpus, "dev-clean", data))
    assert r.returncode == 0, r.stderr
    flac = corpus / "LibriSpeech" / "dev-clean" / "1001" / "10" / "1001-10-0000.flac"
    first = (data / "wav.scp").read_text().splitlines()[0]
    assert first == f"1001-10-0000 flac -c -d -s '{flac}' |"
    # the pipe decodes, and to the same samples as the file
    from s3prl.data.audio import load_audio

    np.testing.assert_array_equal(load_audio(first.split(" ", 1)[1], utt_id="1001-10-0000"),
                                  load_audio(str(flac), utt_id="1001-10-0000"))
    r = cli(["bash", FEATS, "--nj", "2", data, tmp_path / "log", tmp_path / "f"])
    assert r.returncode == 0, r.stderr
    # asking for the other format is not a skip
    r = cli(verb("prepare_librispeech", "--wav-format", "path", corpus, "dev-clean", data))
    assert r.returncode == 0 and (data / "wav.scp").read_text().splitlines()[0] == f"1001-10-0000 {flac}"


def test_inconsistent_spk2utt_caught_before_features_are_computed(tmp_path, wav_dir):
    data = _copy(wav_dir, tmp_path / "data")
    lines = (data / "spk2utt").read_text().splitlines()
    # move one utterance of speaker 1001 to speaker 1002 in spk2utt only
    a, b = lines[0].split(), lines[1].split()
    lines[0], lines[1] = " ".join(a[:-1]), " ".join(b + [a[-1]])
    (data / "spk2utt").write_text("\n".join(lines) + "\n")
    r = cli(["bash", FEATS, "--nj", "2", data, tmp_path / "log", tmp_path / "f"])
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].endswith(
        f"{data}/spk2utt:2: utterance '{a[-1]}' of speaker '1002' disagrees with utt2spk; "
        f"regenerate spk2utt with utt2spk_to_spk2utt.pl"), r.stderr
    # nothing computed: no split, no ark, no job log, no features
    assert not (data / "split2").exists()
    assert not (tmp_path / "f").exists() or not any((tmp_path / "f").iterdir())
    assert not list((tmp_path / "log").glob("compute_feats.*.log"))
    assert not (data / "feats.scp").exists()
    # the dump verb checks it before extracting too
    r = cli(["bash", DUMP, "--nj", "1", "fbank", data, tmp_path / "dump"])
    assert r.returncode == 1 and "spk2utt:2:" in r.stderr and not (tmp_path / "dump" / "ark").exists()


# ------------------------------------------------- defect 2: a downstream run over recomputed features
def test_downstream_run_not_skipped_over_features_made_from_other_inputs(tmp_path):
    """Stage 5 over a Kaldi feature dir (fbank): its record hashes the dir's tables and
    compute_feats.sh's record of the audio inputs, so features recomputed from an edited wav.scp
    are not taken for the ones the finished run used (the exp dir refuses them, naming why)."""
    from s3prl.downstream.config import load_downstream_config
    from s3prl.downstream.task import RunInputs, run_downstream
    from s3prl.errors import UserError
    from tests.downstream.conftest import build_cpc
    from tests.downstream.test_task import FAST

    fx = build_cpc(tmp_path / "c", utts_per_speaker=2, dim=8)
    (fx.feats / "conf").mkdir(exist_ok=True)
    (fx.feats / "conf" / "feats.inputs").write_text("wav.scp aaaa\n")

    def run(exp):
        cfg = load_downstream_config(None, ["head.name=linear", *FAST], task="phone")
        return run_downstream(cfg, RunInputs(str(fx.labels), feats_dir=str(fx.feats)), exp, progress=False)

    rec = run(tmp_path / "exp")
    assert run(tmp_path / "exp")["skipped"]                      # unchanged: skip
    (fx.feats / "conf" / "feats.inputs").write_text("wav.scp bbbb\n")  # recomputed from an edited wav.scp
    with pytest.raises(UserError, match="another config or inputs"):
        run(tmp_path / "exp")
    assert run(tmp_path / "exp2")["config_hash"] != rec["config_hash"]


def test_pretraining_on_edited_data_is_neither_complete_nor_resumed(tmp_path, wav_dir, tiny_ckpt):
    exp = tmp_path / "tera"
    shutil.copytree(tiny_ckpt.parent, exp)
    assert set(json.loads((exp / "inputs.json").read_text())) == {"wav.scp", "utt2spk", "spk2utt"}
    data = _copy(wav_dir, tmp_path / "train")
    _swap_first_audio(data)
    snap = _mtimes(exp)
    r = cli(pretrain_cmd(data, exp))
    assert r.returncode == 1 and "complete" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1].endswith(
        f"{exp} holds checkpoints trained on other data: {data / 'wav.scp'} changed since the run started "
        f"(see {exp / 'inputs.json'}); use another exp dir or remove it"), r.stderr
    assert _mtimes(exp) == snap
    # the same data: complete as before
    r = cli(pretrain_cmd(wav_dir, exp))
    assert r.returncode == 0 and "pre-training is complete" in r.stderr, r.stderr
    # an interrupted run (final checkpoint missing) is not resumed on the edited data either
    (exp / "states-12.ckpt").unlink()
    snap = _mtimes(exp)
    r = cli(pretrain_cmd(data, exp))
    assert r.returncode == 1 and "holds checkpoints trained on other data" in r.stderr, r.stderr
    assert {k: v for k, v in _mtimes(exp).items() if k != "config.yaml"} == \
        {k: v for k, v in snap.items() if k != "config.yaml"}
