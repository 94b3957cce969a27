"""s3prl.dump's layout helpers and the ``last`` link (the dump itself, merge and check are covered
end to end in tests/bin/test_extract.py and tests/reliability/test_stale_outputs.py)."""
from __future__ import annotations

import os

import pytest

from s3prl import dump as D
from s3prl.errors import UserError


def test_layout_paths(tmp_path):
    assert D.layer_dir(tmp_path, 3, "train") == tmp_path / "layer-3" / "train"
    assert D.job_prefix(tmp_path, "train", 2) == tmp_path / "ark" / "train" / "raw.2"
    assert D.complete_record(tmp_path, "dev") == tmp_path / "complete" / "dev.json"
    assert D.last_link(tmp_path) == tmp_path / "last"
    assert D.layer_of(tmp_path / "layer-12") == 12
    assert D.layer_of(tmp_path / "last") is None and D.layer_of(tmp_path / "layer-x") is None


def test_last_link_is_relative_replaced_atomically_and_never_clobbers(tmp_path):
    for k in (2, 3):
        (tmp_path / f"layer-{k}" / "train").mkdir(parents=True)
        (tmp_path / f"layer-{k}" / "train" / "feats_dim").write_text(f"{k}\n")
    D.write_last_link(tmp_path, 2)
    assert os.readlink(tmp_path / "last") == "layer-2"
    D.write_last_link(tmp_path, 3)           # over the old link (rename of a new one: no gap)
    assert os.readlink(tmp_path / "last") == "layer-3"
    assert (tmp_path / "last" / "train" / "feats_dim").read_text() == "3\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last", "layer-2", "layer-3"]   # no temporaries left
    moved = tmp_path.parent / "moved"
    tmp_path.rename(moved)                   # relative: the link survives moving the dump dir
    assert (moved / "last" / "train" / "feats_dim").read_text() == "3\n"
    # a real directory called last is the user's: an error, left as it was
    other = moved.parent / "other"
    (other / "last").mkdir(parents=True)
    (other / "last" / "keep").write_text("x")
    with pytest.raises(UserError, match="last: exists and is not a symlink"):
        D.write_last_link(other, 3)
    assert (other / "last" / "keep").read_text() == "x"
