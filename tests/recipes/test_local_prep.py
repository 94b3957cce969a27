"""egs/<corpus>/local/: the corpus-specific data prep of each recipe (Kaldi's layout), run from
another directory through paths with spaces; bad arguments give the usage, a missing corpus one
line naming it, exit 1."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.data.test_timit import make_fake_timit
from tests.reliability.test_stale_outputs import _tiny_librispeech

REPO = Path(__file__).resolve().parents[2]


def _sh(script: str, *args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "egs" / script), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)


def test_librispeech_and_timit_prep_from_another_dir(tmp_path):
    corpus = _tiny_librispeech(tmp_path)
    r = _sh("librispeech/local/data_prep.sh", corpus, "dev-clean", tmp_path / "data dir" / "dev", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "data dir" / "dev" / "utt2spk").read_text() == "1001-10-0000 1001-10\n1002-10-0000 1002-10\n"
    make_fake_timit(tmp_path / "timit corpus")
    r = _sh("timit/local/timit_data_prep.sh", tmp_path / "timit corpus", tmp_path / "tdata", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "tdata").iterdir() if p.is_dir()) == ["dev", "test", "train"]


@pytest.mark.parametrize("script,args,verb", [
    ("librispeech/local/data_prep.sh", ["dev-clean", "d"], "prepare_librispeech"),
    ("timit/local/timit_data_prep.sh", ["d"], "prepare_timit"),
    ("mosei/local/data_prep.sh", ["d", "s"], "prepare_mosei"),
])
def test_usage_and_missing_corpus(tmp_path, script, args, verb):
    r = _sh(script, "only-one", cwd=tmp_path) if len(args) > 1 else _sh(script, cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.startswith("Usage: ")
    r = _sh(script, tmp_path / "no corpus", *args, cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith(f"{verb}.py: error: {tmp_path}/no corpus")


def test_prep_in_a_recipe_copied_outside_the_repo(tmp_path):
    """A user's own recipe dir made with `cp -r egs/librispeech` somewhere else (its utils and
    path.sh links pointing back at the toolkit, as Kaldi recipes link steps/ and utils/): local/
    finds the shell library through the recipe's own utils link."""
    import os
    import shutil

    rdir = tmp_path / "my recipes" / "libri copy"
    rdir.mkdir(parents=True)
    shutil.copytree(REPO / "egs" / "librispeech" / "local", rdir / "local")
    os.symlink(REPO / "utils", rdir / "utils")
    os.symlink(REPO / "path.sh", rdir / "path.sh")
    corpus = _tiny_librispeech(tmp_path)
    r = subprocess.run(["bash", "local/data_prep.sh", str(corpus), "dev-clean", "data/dev"], cwd=rdir,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (rdir / "data" / "dev" / "utt2spk").read_text() == "1001-10-0000 1001-10\n1002-10-0000 1002-10\n"
