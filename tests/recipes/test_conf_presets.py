"""The recipes' conf/ presets: every tiny preset is an override of its base preset (a top-level
`base:` key, s3prl.config) that resolves to exactly the settings the whole tiny file had before
(tests/recipes/presets_before_base.yaml, read as stored configs are: renamed keys under their
new names), and the confs the three recipes share are links to one
file, not copies (as Kaldi recipes link steps/ and utils/)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import yaml

from s3prl.config import from_dict, load_config, to_dict, upgrade_keys
from s3prl.downstream.asr import AsrConfig, load_asr_config
from s3prl.downstream.config import DownstreamConfig, load_downstream_config, load_task_config
from s3prl.downstream.hybrid import HybridConfig
from s3prl.downstream.sentiment import SentimentConfig, load_sentiment_config
from s3prl.train.pretrain import PretrainConfig

REPO = Path(__file__).resolve().parents[2]
EGS = REPO / "egs"
BEFORE = yaml.safe_load((Path(__file__).with_name("presets_before_base.yaml")).read_text())


def _loaders(key: str):
    """(the preset's path, its loader, how the old whole file loads) for a key of BEFORE."""
    if "/" not in key:
        path = EGS / "librispeech" / "conf" / key
        return path, lambda p: load_config(PretrainConfig, p), lambda d: from_dict(PretrainConfig, upgrade_keys(PretrainConfig, d), key)
    path = EGS / key
    name = path.name
    cls, load = ((AsrConfig, load_asr_config) if name.startswith("asr_") else
                 (SentimentConfig, load_sentiment_config) if name.startswith("sentiment_") else
                 (HybridConfig, lambda p: load_task_config(HybridConfig, p)) if name.startswith("hybrid_") else
                 (DownstreamConfig, load_downstream_config))
    return path, load, lambda d: load_task_config(cls, None, set_keys=upgrade_keys(cls, d))


@pytest.mark.parametrize("key", sorted(BEFORE))
def test_tiny_preset_is_an_override_of_its_base_with_the_same_settings(key):
    path, load, load_old = _loaders(key)
    base = path.with_name(path.name.replace("_tiny.yaml", ".yaml") if "/" in key else path.name.replace("_tiny", "_base"))
    raw = yaml.safe_load(path.read_text())
    assert raw["base"] == base.name, f"{path}: base: should name {base.name}"
    assert to_dict(load(path)) == to_dict(load_old(BEFORE[key]))
    # and it says less than the whole file did: only what differs from the base
    assert len(yaml.safe_dump(raw)) < len(yaml.safe_dump(BEFORE[key]))


def test_every_tiny_preset_is_covered():
    tiny = {p.relative_to(EGS) for p in EGS.glob("*/conf/**/*_tiny.yaml") if not p.is_symlink()}
    keys = {Path("librispeech/conf") / k if "/" not in k else Path(k) for k in BEFORE}
    assert tiny == keys


def _md5(p: Path) -> str:
    return hashlib.md5(p.read_bytes()).hexdigest()


def test_identical_confs_are_links():
    """No two regular files under egs/*/ (confs, cmd.sh, path.sh, local/) have the same bytes:
    a conf shared by recipes is one file that the others link (relatively, within the repo)."""
    seen: dict[str, Path] = {}
    for p in sorted(EGS.rglob("*")):
        if p.is_symlink():
            target = os.readlink(p)
            assert not os.path.isabs(target), f"{p}: link {target} should be relative"
            assert p.resolve().is_relative_to(REPO), f"{p}: links outside the repository"
            continue
        if p.is_file() and p.name != "RESULTS.md":
            assert _md5(p) not in seen, f"{p} is a copy of {seen[_md5(p)]}: link it"
            seen[_md5(p)] = p
