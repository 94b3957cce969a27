"""Kill -9 anywhere: each long stage is SIGKILLed at several points (deterministic file-based
points plus seeded random delays), rerun with the same command, and compared with an
uninterrupted run. No temporary file may remain after the rerun."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.reliability.conftest import PHONE_TINY, pretrain_cmd
from tests.reliability.harness import (REPO, after, ark_contents, checkpoint_tensors, cli, file_appears,
                                       random_delays, run_and_kill, tmp_leftovers, tree_digest, verb)


def _same_arks(a: Path, b: Path) -> None:
    x, y = ark_contents(a), ark_contents(b)
    assert list(x) == list(y)
    for k in x:
        np.testing.assert_array_equal(x[k], y[k])


def test_compute_feats_verb_killed_then_rerun(tmp_path, wav_dir):
    ref = tmp_path / "ref" / "raw"
    r = cli(verb("compute_feats", wav_dir, ref))
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out" / "raw"
    delays = random_delays(seed=11, n=2, lo=0.0, hi=0.3)
    points = [file_appears(out.parent, ".raw.ark.tmp.*")] + [
        after(d, file_appears(out.parent, ".raw.ark.tmp.*")) for d in delays]
    for when in points:
        killed, _ = run_and_kill(verb("compute_feats", wav_dir, out), when)
        if killed:  # complete or absent, never partial
            scp = Path(f"{out}.scp")
            assert not scp.exists() or len(scp.read_text().splitlines()) == 8
    r = cli(verb("compute_feats", wav_dir, out))
    assert r.returncode == 0, r.stderr
    assert Path(f"{out}.ark").read_bytes() == Path(f"{ref}.ark").read_bytes()
    assert Path(f"{out}.utt2num_frames").read_text() == Path(f"{ref}.utt2num_frames").read_text()
    assert Path(f"{out}.scp").read_text() == Path(f"{ref}.scp").read_text().replace(str(ref.parent), str(out.parent))
    assert tmp_leftovers(out.parent) == []


def _feats_sh(data: Path, root: Path) -> list[str]:
    return ["bash", REPO / "utils" / "compute_feats.sh", "--nj", "2", data, root / "log", root / "feats"]


def _norm(p: Path, root: Path) -> str:
    return p.read_text().replace(str(root), "ROOT")


def test_compute_feats_sh_killed_then_rerun(tmp_path, wav_dir):
    ref_data = tmp_path / "ref" / "data"
    shutil.copytree(wav_dir, ref_data)
    r = cli(_feats_sh(ref_data, tmp_path / "ref"))
    assert r.returncode == 0, r.stderr
    data = tmp_path / "run" / "data"
    shutil.copytree(wav_dir, data)
    root = tmp_path / "run"
    # kill points: once the first job's ark is complete, and after a seeded delay past the planning
    for when in (file_appears(root / "feats", "raw_fbank_data.*.scp"),
                 after(random_delays(seed=5, n=1, lo=0.5, hi=2.0)[0])):
        run_and_kill(_feats_sh(data, root), when)
        assert not (data / "conf" / "feats.yaml").exists() or (data / "cmvn.scp").is_file()
    r = cli(_feats_sh(data, root))
    assert r.returncode == 0, r.stderr
    for f in ("feats.scp", "cmvn.scp", "utt2num_frames", "feats_dim", "frame_shift", "conf/feats.yaml"):
        assert _norm(data / f, root) == _norm(ref_data / f, tmp_path / "ref"), f
    _same_arks(data / "feats.scp", ref_data / "feats.scp")
    _same_arks(data / "cmvn.scp", ref_data / "cmvn.scp")
    assert tmp_leftovers(root / "feats") == [] and tmp_leftovers(data) == []
    r = cli(_feats_sh(data, root))  # complete now: skipped
    assert r.returncode == 0 and "skip" in r.stdout


def test_pretrain_killed_then_resumed(tmp_path, wav_dir, tiny_ckpt):
    exp = tmp_path / "exp"
    for ckpt in ("states-4.ckpt", "states-8.ckpt"):
        killed, err = run_and_kill(pretrain_cmd(wav_dir, exp), file_appears(exp, ckpt))
        assert killed, err
    r = cli(pretrain_cmd(wav_dir, exp))
    assert r.returncode == 0, r.stderr
    a, b = checkpoint_tensors(exp / "states-12.ckpt"), checkpoint_tensors(tiny_ckpt)
    assert set(a) == set(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    assert tmp_leftovers(exp) == []


def _dump_sh(ckpt: Path, data: Path, dump: Path) -> list[str]:
    return ["bash", REPO / "utils" / "dump_feats.sh", "--nj", "2", "--layer", "last", ckpt, data, dump]


def test_extract_and_dump_killed_then_rerun(tmp_path, wav_dir, tiny_ckpt):
    # the extract verb
    ref = tmp_path / "ref" / "raw"
    r = cli(verb("extract", "--upstream", tiny_ckpt, "--layer", "last", "--batch-size", "2", wav_dir, ref))
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out" / "raw"
    run_and_kill(verb("extract", "--upstream", tiny_ckpt, "--layer", "last", "--batch-size", "2", wav_dir, out),
                 file_appears(out.parent, ".raw.layer-*.ark.tmp.*"))
    r = cli(verb("extract", "--upstream", tiny_ckpt, "--layer", "last", "--batch-size", "2", wav_dir, out))
    assert r.returncode == 0, r.stderr
    for f in sorted(p.name for p in ref.parent.iterdir()):
        if f.endswith(".ark") or f.endswith("utt2num_frames"):
            assert (out.parent / f).read_bytes() == (ref.parent / f).read_bytes(), f
    assert tmp_leftovers(out.parent) == []
    # utils/dump_feats.sh, killed once a job's output exists, then rerun
    data = tmp_path / "data" / "train"
    shutil.copytree(wav_dir, data)
    dref, dump = tmp_path / "dref", tmp_path / "dump"
    r = cli(_dump_sh(tiny_ckpt, data, dref))
    assert r.returncode == 0, r.stderr
    run_and_kill(_dump_sh(tiny_ckpt, data, dump), file_appears(dump / "ark" / "train", "raw.*.utt2num_frames"))
    r = cli(_dump_sh(tiny_ckpt, data, dump))
    assert r.returncode == 0, r.stderr
    (layer,) = sorted(p.name for p in dref.glob("layer-*"))
    _same_arks(dump / layer / "train" / "feats.scp", dref / layer / "train" / "feats.scp")
    da, db = tree_digest(dump / layer), tree_digest(dref / layer)
    assert set(da) == set(db)
    assert tmp_leftovers(dump) == []


def _downstream_cmd(cpc, exp: Path) -> list[str]:
    ov = ["runner.total_steps=24", "runner.save_step=6", "runner.dev_step=6", "runner.log_step=6",
          "runner.max_keep=10"]
    return verb("train_downstream", "--config", PHONE_TINY, *[a for o in ov for a in ("--override", o)],
                "--labels", cpc.labels, "--feats", cpc.feats, "--upstream", "fbank", "--results-md", "",
                "--device", "cpu", "--no-progress", exp)


def test_train_downstream_killed_then_resumed(tmp_path, cpc_set):
    import json

    ref = tmp_path / "ref"
    r = cli(_downstream_cmd(cpc_set, ref))
    assert r.returncode == 0, r.stderr
    exp = tmp_path / "exp"
    for ckpt in ("states-6.ckpt", "states-18.ckpt"):
        run_and_kill(_downstream_cmd(cpc_set, exp), file_appears(exp, ckpt))
    r = cli(_downstream_cmd(cpc_set, exp))
    assert r.returncode == 0, r.stderr
    ra, rb = json.loads((exp / "results.json").read_text()), json.loads((ref / "results.json").read_text())
    for key in ("test_acc", "dev_acc", "best_step"):
        if key in rb:
            assert ra[key] == pytest.approx(rb[key], abs=1e-6), key
    a, b = checkpoint_tensors(exp / "states-24.ckpt"), checkpoint_tensors(ref / "states-24.ckpt")
    for k in b:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    assert tmp_leftovers(exp) == []
