"""s3prl.config's `base:` key: a config that inherits another file and says only what differs
(resolved relative to the including file's real location, merged section by section, cycles and
unknown keys refused with the file at fault named)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest

from s3prl.config import ConfigError, from_dict, load_config, read_yaml, to_dict, upgrade_keys


@dataclass
class Opt:
    lr: float = 1.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class Cfg:
    name: str = "default"
    steps: int = 10
    optimizer: Opt = field(default_factory=Opt)


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_child_overrides_base_section_by_section(tmp_path):
    _write(tmp_path / "base.yaml", "name: base\nsteps: 100\noptimizer:\n  lr: 0.5\n  betas: [0.1, 0.2]\n")
    child = _write(tmp_path / "child.yaml", "base: base.yaml\nsteps: 5\noptimizer:\n  lr: 0.25\n")
    cfg = load_config(Cfg, child)
    # steps and optimizer.lr from the child; name and optimizer.betas (a list: replaced, not merged) from the base
    assert to_dict(cfg) == {"name": "base", "steps": 5, "optimizer": {"lr": 0.25, "betas": [0.1, 0.2]}}
    assert "base" not in read_yaml(child)
    # overrides still apply last
    assert load_config(Cfg, child, ["optimizer.betas=[0.5, 0.6]"]).optimizer.betas == [0.5, 0.6]


def test_chain_of_bases_and_paths_relative_to_the_real_file(tmp_path):
    _write(tmp_path / "conf" / "a.yaml", "name: a\nsteps: 1\n")
    _write(tmp_path / "conf" / "b.yaml", "base: a.yaml\nsteps: 2\n")
    _write(tmp_path / "conf" / "c.yaml", "base: b.yaml\noptimizer: {lr: 3.0}\n")
    # a link elsewhere (as egs/timit/conf links egs/librispeech/conf) finds the base next to its target
    (tmp_path / "other dir").mkdir()
    os.symlink(tmp_path / "conf" / "c.yaml", tmp_path / "other dir" / "c.yaml")
    for path in (tmp_path / "conf" / "c.yaml", tmp_path / "other dir" / "c.yaml"):
        assert to_dict(load_config(Cfg, path)) == {"name": "a", "steps": 2, "optimizer": {"lr": 3.0, "betas": [0.9, 0.999]}}


def test_cycle_refused_naming_the_chain(tmp_path):
    a = _write(tmp_path / "a.yaml", "base: b.yaml\nsteps: 1\n")
    _write(tmp_path / "b.yaml", "base: a.yaml\nsteps: 2\n")
    with pytest.raises(ConfigError) as e:
        load_config(Cfg, a)
    assert str(e.value).startswith(f"{tmp_path / 'b.yaml'}: base: a.yaml comes back to a file already included (")
    self_ref = _write(tmp_path / "self.yaml", "base: self.yaml\nsteps: 1\n")
    with pytest.raises(ConfigError, match="self.yaml: base: self.yaml comes back"):
        load_config(Cfg, self_ref)


def test_bad_base_values(tmp_path):
    missing = _write(tmp_path / "m.yaml", "base: nowhere.yaml\nsteps: 1\n")
    with pytest.raises(ConfigError) as e:
        load_config(Cfg, missing)
    assert str(e.value) == f"{missing}: base: {tmp_path / 'nowhere.yaml'}: no such config file"
    for bad in ("base: [a.yaml]\n", "base: ''\n", "base: 3\n"):
        f = _write(tmp_path / "bad.yaml", bad + "steps: 1\n")
        with pytest.raises(ConfigError, match=r"bad.yaml: base: expected the name of a config file"):
            load_config(Cfg, f)


@pytest.mark.parametrize("child,base,overrides,at_fault,message", [
    # unknown key / bad value written in the base, in the child; a bad --override names the file given
    ("steps: 2\n", "optimizer:\n  lr: 0.5\n  lr_typo: 1\n", [], "base",
     "unknown key 'optimizer.lr_typo' (valid: betas, lr)"),
    ("step: 2\n", "name: base\n", [], "child", "unknown key 'step' (valid: name, optimizer, steps)"),
    ("optimizer: {lr: fast}\n", "name: base\n", [], "child", "optimizer.lr: 'fast' is not a float"),
    ("steps: 2\n", "optimizer:\n  betas: [0.9, x]\n", [], "base", "optimizer.betas[1]: 'x' is not a float"),
    ("steps: 2\n", "steps: 3\n", ["steps=x"], "child", "steps: 'x' is not an int"),
])
def test_errors_name_the_file_that_wrote_the_key(tmp_path, child, base, overrides, at_fault, message):
    files = {"base": _write(tmp_path / "base.yaml", base),
             "child": _write(tmp_path / "child.yaml", "base: base.yaml\n" + child)}
    with pytest.raises(ConfigError) as e:
        load_config(Cfg, files["child"], overrides)
    assert str(e.value) == f"{files[at_fault]}: {message}"


def test_stored_configs_are_read_with_renamed_keys_under_their_new_names():
    """A run's config.yaml or a checkpoint's config written before a rename still loads
    (upgrade_keys, at any depth), while the same old key in a user's YAML is an error naming the new one."""
    from s3prl.downstream.asr import AsrConfig
    from s3prl.train.pretrain import PretrainConfig

    old = {"upstream": {"model": "tera", "transformer": {"downsample_rate": 2}}, "data": {"batch_size": 3}}
    cfg = from_dict(PretrainConfig, upgrade_keys(PretrainConfig, old))
    assert cfg.upstream.transformer.frame_stacking == 2 and cfg.dataloader.batch_size == 3
    with pytest.raises(ConfigError, match=r"key 'upstream.transformer.downsample_rate' is now "
                                          r"'upstream.transformer.frame_stacking'"):
        from_dict(PretrainConfig, {"upstream": old["upstream"]})
    asr = from_dict(AsrConfig, upgrade_keys(AsrConfig, {"model": {"downsample_rate": 3, "downsample_style": "drop"}}))
    assert (asr.model.subsampling, asr.model.subsampling_style) == (3, "drop")
    # a key whose new name is also present is not silently dropped
    with pytest.raises(ConfigError):
        from_dict(AsrConfig, upgrade_keys(AsrConfig, {"model": {"downsample_rate": 3, "subsampling": 2}}))
