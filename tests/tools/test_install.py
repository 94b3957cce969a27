"""tools/install.sh: a disk too small for torch stops the install before pip runs, with one line
naming the place and the space needed, and leaves no venv behind."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_install_stops_on_a_full_disk_before_creating_the_venv(tmp_path):
    root = tmp_path / "check out"  # a space in the path
    (root / "tools").mkdir(parents=True)
    shutil.copy(REPO / "tools" / "install.sh", root / "tools" / "install.sh")
    env = dict(os.environ, S3PRL_INSTALL_NEED_GB="100000000")  # more than any disk has
    r = subprocess.run(["bash", str(root / "tools" / "install.sh")], capture_output=True, text=True, env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert f"install.sh: {root / 'tools'} has" in lines[0]
    assert "needs about 100000000 GB" in lines[0]
    assert not (root / "tools" / "venv").exists()


def test_install_space_check_passes_when_the_disk_has_room(tmp_path):
    # Same script, need of 0 GB: it gets past the check to creating the venv. Stop it there by
    # giving it a python3 that cannot make venvs, so the test stays fast and offline.
    root = tmp_path / "co"
    (root / "tools").mkdir(parents=True)
    shutil.copy(REPO / "tools" / "install.sh", root / "tools" / "install.sh")
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "python3").write_text("#!/bin/sh\necho fake-python3 \"$@\" >&2\nexit 7\n")
    (fake_bin / "python3").chmod(0o755)
    env = dict(os.environ, S3PRL_INSTALL_NEED_GB="0", PATH=f"{fake_bin}:{os.environ['PATH']}")
    r = subprocess.run(["bash", str(root / "tools" / "install.sh")], capture_output=True, text=True, env=env)
    assert r.returncode == 7, r.stdout + r.stderr
    assert "fake-python3 -m venv" in r.stderr
    assert "GB free" not in r.stderr
