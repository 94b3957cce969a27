"""The pre-training config's `dataloader:` section (formerly `data:`): an old key is a one-line
error naming the new one, and runs and checkpoints written with the old key still load."""
from pathlib import Path

import pytest
import torch
import yaml

from s3prl.config import ConfigError, load_config
from s3prl.train.pretrain import PretrainConfig, run_pretrain
from tests.train.conftest import make_data_dir

CONF = Path(__file__).resolve().parents[2] / "egs" / "librispeech" / "conf"
TINY = ["upstream.transformer.hidden_size=16", "upstream.transformer.num_attention_heads=2",
        "upstream.transformer.intermediate_size=16", "upstream.transformer.num_hidden_layers=1",
        "runner.total_steps=2", "runner.save_step=2", "runner.log_step=1", "dataloader.batch_size=4"]


def test_old_data_section_is_a_one_line_error(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text((CONF / "tera_base.yaml").read_text().replace("\ndataloader:", "\ndata:"))
    with pytest.raises(ConfigError) as e:
        load_config(PretrainConfig, old)
    assert str(e.value) == f"{old}: key 'data' is now 'dataloader'; rename it"
    with pytest.raises(ConfigError, match="key 'data' is now 'dataloader'"):
        load_config(PretrainConfig, CONF / "tera_tiny.yaml", ["data.batch_size=4"])


PRESETS = sorted(p.name for p in CONF.glob("*.yaml") if p.stem.endswith(("_base", "_tiny")))


def test_the_presets_are_found():
    assert {"tera_base.yaml", "tera_tiny.yaml", "apc_base.yaml", "apc_tiny.yaml"} <= set(PRESETS)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_pretraining_preset_uses_dataloader(preset):
    raw = yaml.safe_load((CONF / preset).read_text())
    assert "data" not in raw and ("dataloader" in raw or "base" in raw)
    load_config(PretrainConfig, CONF / preset)


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_train_on_the_windows_they_encode(preset):
    from s3prl.train.pretrain import window_mismatch

    assert window_mismatch(load_config(PretrainConfig, CONF / preset)) is None
    cfg = load_config(PretrainConfig, CONF / preset, ["dataloader.max_timestep=77"])
    if cfg.upstream.model == "apc":
        assert window_mismatch(cfg) is None   # a GRU has no windows
    else:
        seq = cfg.upstream.transformer.sequence_length
        assert window_mismatch(cfg) == (f"dataloader.max_timestep 77 != upstream.transformer.sequence_length "
                                        f"{seq}: training sees inputs of up to 77 frames, extraction encodes "
                                        f"windows of {seq}")


def _old_transformer(sec: dict) -> None:
    sec["transformer"] = {("downsample_rate" if k == "frame_stacking" else k): v for k, v in sec["transformer"].items()}


def test_runs_and_checkpoints_written_with_data_still_load(tmp_path):
    from s3prl.upstream.checkpoint import load_checkpoint
    from s3prl.upstream.hub import load_upstream

    data = make_data_dir(tmp_path / "data", n_utts=6)
    exp = tmp_path / "exp"
    cfg = load_config(PretrainConfig, CONF / "tera_tiny.yaml", TINY)
    run_pretrain(cfg, data, exp, progress=False)
    # Make the run look like one of before the renames: config.yaml and the checkpoint's runner
    # config hold `data`, the transformer sections `downsample_rate` (now `frame_stacking`).
    stored = yaml.safe_load((exp / "config.yaml").read_text())
    stored = {("data" if k == "dataloader" else k): v for k, v in stored.items()}
    _old_transformer(stored["upstream"])
    (exp / "config.yaml").write_text(yaml.safe_dump(stored, sort_keys=False))
    ckpt_path = exp / "states-2.ckpt"
    ckpt = load_checkpoint(ckpt_path)
    assert ckpt["Config"]["dataloader"]["batch_size"] == 4
    ckpt["Config"]["data"] = ckpt["Config"].pop("dataloader")
    _old_transformer(ckpt["S3PRL_Recipes"]["upstream"])
    torch.save(ckpt, ckpt_path)
    before = ckpt_path.stat().st_mtime_ns
    # the old run is recognised as the same, complete run: nothing is done
    assert run_pretrain(cfg, data, exp, progress=False) == 0
    assert ckpt_path.stat().st_mtime_ns == before and not (exp / "states-4.ckpt").exists()
    # and resumed from with more steps
    more = load_config(PretrainConfig, CONF / "tera_tiny.yaml", TINY + ["runner.total_steps=4"])
    assert run_pretrain(more, data, exp, resume=True, progress=False) == 0
    assert load_checkpoint(exp / "states-4.ckpt")["Step"] == 4
    up = load_upstream(ckpt_path)
    assert up.model_type == "tera" and up.step == 2 and up.num_hidden_states == 2
