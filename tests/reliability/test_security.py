"""Security: checkpoints are never unpickled beyond plain data (through every loading entry
point), no eval/exec in the package or of user input in shell scripts, and the recipe works from a
path containing spaces."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import torch

from s3prl.errors import UserError
from tests.reliability.conftest import PHONE_TINY, TERA_TINY
from tests.reliability.harness import REPO, cli


class _Payload:
    """Unpickling this object would create the file named by `path`."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def evil(tmp_path, tiny_ckpt):
    marker = tmp_path / "PWNED"
    ckpt = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)
    ckpt["extra"] = _Payload(str(marker))
    path = tmp_path / "exp" / "states-4.ckpt"
    path.parent.mkdir()
    torch.save(ckpt, path)
    shutil.copy(tiny_ckpt.parent / "config.yaml", path.parent / "config.yaml")
    return path, marker


def test_payload_refused_by_hub_and_extract(evil, wav_dir, tmp_path):
    path, marker = evil
    from s3prl.dump import extract
    from s3prl.upstream.hub import load_upstream
    with pytest.raises(UserError, match="states-4.ckpt"):
        load_upstream(str(path))
    with pytest.raises(UserError, match="states-4.ckpt"):
        extract(str(path), wav_dir, tmp_path / "o" / "raw", layers="last")
    assert not marker.exists()


def test_payload_refused_by_train_downstream(evil, wav_dir, cpc_set, tmp_path):
    path, marker = evil
    from s3prl.bin.train_downstream import main
    with pytest.raises(UserError, match="states-4.ckpt"):
        main(["--config", str(PHONE_TINY), "--labels", str(cpc_set.labels), "--data", str(wav_dir),
              "--upstream", str(path), "--results-md", "", "--device", "cpu", "--no-progress", str(tmp_path / "ds")])
    assert not marker.exists()


def test_payload_refused_on_pretrain_resume(evil, wav_dir):
    from tests.reliability.conftest import PRETRAIN_OVERRIDES
    from s3prl.bin.pretrain import main
    path, marker = evil
    ov = [a for o in PRETRAIN_OVERRIDES for a in ("--override", o)]
    with pytest.raises(UserError, match="states-4.ckpt"):
        main(["--config", str(TERA_TINY), *ov, "--device", "cpu", "--no-progress", str(wav_dir), str(path.parent)])
    assert not marker.exists()
    assert path.is_file()  # the refused checkpoint is left for the user to inspect


def test_no_eval_or_exec_in_python():
    hits = []
    for p in (REPO / "s3prl").rglob("*.py"):
        for i, line in enumerate(p.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if re.search(r"(?<![\w.])(eval|exec)\s*\(", code) or "pickle.load" in code or "weights_only=False" in code:
                hits.append(f"{p.relative_to(REPO)}:{i}: {line.strip()}")
    assert hits == []


def test_no_eval_in_shell_scripts():
    scripts = list((REPO / "utils").glob("*.sh")) + list((REPO / "egs").glob("*/*.sh")) + \
        list((REPO / "egs").glob("*/local/*.sh")) + list((REPO / "tools").glob("*.sh")) + [REPO / "path.sh"]
    hits = []
    for p in scripts:
        for i, line in enumerate(p.read_text().splitlines(), 1):
            code = line.split("#", 1)[0] if not line.lstrip().startswith("#") else ""
            if re.search(r"(^|[;&|(\s])eval\s", code):
                hits.append(f"{p.relative_to(REPO)}:{i}: {line.strip()}")
    assert hits == []


