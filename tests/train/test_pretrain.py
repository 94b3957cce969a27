"""s3prl.bin.pretrain end to end on a tiny synthetic data dir: each model learns, an interrupted
and resumed run ends with the same weights, reruns are no-ops, and bad input gives one-line errors."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from s3prl.bin.pretrain import main
from s3prl.config import ConfigError, load_config
from s3prl.errors import UserError
from s3prl.train.pretrain import PretrainConfig
from tests.train.conftest import make_data_dir

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "egs" / "librispeech" / "conf"
SMALL = {  # very small models: hidden 32, 2 layers, 2 heads
    "transformer": ["upstream.transformer.hidden_size=32", "upstream.transformer.num_attention_heads=2",
                    "upstream.transformer.intermediate_size=64", "upstream.transformer.num_hidden_layers=2"],
    "apc": ["upstream.apc.hidden_size=32"],
}


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def run(conf, data, exp, *extra, steps=20, resume=False):
    model = "apc" if conf.startswith("apc") else "transformer"
    args = ["--config", str(CONF / conf), "--no-progress"]
    ov = SMALL[model] + [f"runner.total_steps={steps}", "runner.log_step=5", "runner.save_step=10",
                         "runner.max_keep=3", "runner.plot_step=10", "dataloader.batch_size=4",
                         "dataloader.max_timestep=80", "optimizer.lr=3e-3", *extra]
    for o in ov:
        args += ["--override", o]
    if resume:
        args.append("--resume")
    return main(args + [str(data), str(exp)])


def fixed_mask_loss(task, batch, seed=123, rounds=4):
    """The objective's loss on fixed data and fixed masks (eval mode): a noise-free learning measure."""
    task.model.eval()
    g = torch.Generator().manual_seed(seed)
    tot = n = 0.0
    with torch.no_grad():
        for _ in range(rounds):
            out = task.model(batch.feats, batch.lengths, g)
            tot += float(out.loss) * out.num_elements
            n += out.num_elements
    return tot / n


@pytest.mark.parametrize("conf", ["mockingjay_tiny.yaml", "tera_tiny.yaml", "aalbert_tiny.yaml", "apc_tiny.yaml"])
def test_tiny_presets_learn(tiny_data, tmp_path, conf):
    from s3prl.config import from_dict, read_yaml
    from s3prl.data.dataset import FeatureDataset, collate_features
    from s3prl.train.pretrain import PretrainTask
    from s3prl.train.trainer import seed_everything
    from s3prl.upstream.checkpoint import load_checkpoint, restore_objective

    exp = tmp_path / "exp"
    assert run(conf, tiny_data, exp, "runner.save_step=150", "runner.plot_step=150", "runner.log_step=50",
               steps=150) == 0
    assert [p.name for p in exp.glob("states-*.ckpt")] == ["states-150.ckpt"]
    cfg = from_dict(PretrainConfig, read_yaml(exp / "config.yaml"))
    data = FeatureDataset(tiny_data, features=cfg.features, max_timestep=80, max_timestep_policy="crop", seed=0)
    batch = collate_features([data[i] for i in range(len(data))])
    seed_everything(cfg.runner.seed)                   # the CLI's initialisation
    task = PretrainTask(cfg, data.dim)
    before = fixed_mask_loss(task, batch)
    restore_objective(task.model, load_checkpoint(exp / "states-150.ckpt"))
    after = fixed_mask_loss(task, batch)
    assert after < 0.95 * before, (before, after)
    hist = torch.load(exp / "states-150.ckpt", weights_only=True)["S3PRL_Recipes"]["extra"]["Trainer"]["history"]
    assert [h["step"] for h in hist] == [50, 100, 150]
    assert (exp / "plots" / "spectrogram-150.png").is_file()
    assert (exp / "plots" / "learning_curve.png").is_file()
    assert any((exp / "tb").iterdir())


def test_resume_same_weights_and_rerun_noop(tiny_data, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    assert run("tera_tiny.yaml", tiny_data, full) == 0
    assert sorted(p.name for p in full.glob("states-*.ckpt")) == ["states-10.ckpt", "states-20.ckpt"]
    shutil.copytree(full, part)
    (part / "states-20.ckpt").unlink()              # interrupted after the step-10 checkpoint
    assert run("tera_tiny.yaml", tiny_data, part) == 0   # resumes automatically
    a = torch.load(full / "states-20.ckpt", weights_only=True)
    b = torch.load(part / "states-20.ckpt", weights_only=True)
    for key in ("Transformer", "SpecHead"):
        for k, v in a[key].items():
            assert torch.equal(v, b[key][k]), (key, k)
    assert a["Step"] == b["Step"] == 20
    assert a["Upstream_Config"]["audio"]["kaldi"]["feat_type"] == "fbank"
    # a complete run is a no-op
    mtime = (full / "states-20.ckpt").stat().st_mtime_ns
    assert run("tera_tiny.yaml", tiny_data, full) == 0
    assert (full / "states-20.ckpt").stat().st_mtime_ns == mtime
    # a different config is refused, naming the key, and nothing is overwritten
    cfg_text = (full / "config.yaml").read_text()
    with pytest.raises(UserError, match=r"optimizer\.lr"):
        run("tera_tiny.yaml", tiny_data, full, "optimizer.lr=5e-4")
    assert (full / "config.yaml").read_text() == cfg_text
    # runner.keep_steps (learning curves) is a free key: a finished run stays finished, unchanged
    assert run("tera_tiny.yaml", tiny_data, full, "runner.keep_steps=[5]") == 0
    assert (full / "states-20.ckpt").stat().st_mtime_ns == mtime and not (full / "states-5.ckpt").exists()
    # --resume may extend total_steps
    assert run("tera_tiny.yaml", tiny_data, full, steps=25, resume=True) == 0
    assert (full / "states-25.ckpt").is_file()


def _write_external(data: Path, dim: int):
    import kaldiio
    utts = [ln.split()[0] for ln in (data / "utt2spk").read_text().splitlines()]
    rng = np.random.default_rng(dim)
    with kaldiio.WriteHelper(f"ark,scp:{data / 'feats.ark'},{data / 'feats.scp'}") as w:
        for u in utts:
            w(u, rng.standard_normal((int(rng.integers(60, 120)), dim)).astype(np.float32))


def test_external_features_and_dim_mismatch_on_resume(tmp_path):
    data = make_data_dir(tmp_path / "data", n_utts=8, seed=1)
    _write_external(data, 40)
    exp = tmp_path / "exp"
    assert run("apc_tiny.yaml", data, exp, "input=external", steps=10) == 0
    ck = torch.load(exp / "states-10.ckpt", weights_only=True)
    assert ck["config"]["data"]["audio"] == {"external_features": True, "feat_dim": 40, "cmvn": "none",
                                             "norm_vars": False}
    (exp / "states-10.ckpt").unlink()
    run("apc_tiny.yaml", data, exp, "input=external", "runner.save_step=4", steps=10)
    (exp / "states-10.ckpt").unlink()
    _write_external(data, 13)
    with pytest.raises(UserError, match="dim 40.*dim 13"):
        run("apc_tiny.yaml", data, exp, "input=external", "runner.save_step=4", steps=10)


def test_empty_data_dir_and_missing_feats(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "utt2spk").write_text("")
    (empty / "wav.scp").write_text("")
    with pytest.raises(UserError, match="empty"):
        run("tera_tiny.yaml", empty, tmp_path / "exp")
    data = make_data_dir(tmp_path / "d", n_utts=2)
    with pytest.raises(UserError, match="feats.scp"):
        run("tera_tiny.yaml", data, tmp_path / "exp2", "input=external")
    # deltas belong to the features section (extraction applies it); the loader's are refused
    with pytest.raises(UserError, match=r"dataloader\.delta_order: .*features\.delta_order"):
        run("tera_tiny.yaml", data, tmp_path / "exp3", "dataloader.delta_order=1")
    assert not (tmp_path / "exp3" / "states-1.ckpt").exists()


def test_config_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("runner:\n  total_step: 10\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*runner\.total_step"):
        load_config(PretrainConfig, bad)
    bad.write_text("optimizer:\n  lr: fast\n")
    with pytest.raises(ConfigError, match=r"optimizer\.lr"):
        load_config(PretrainConfig, bad)
    bad.write_text("runner:\n  total_steps: 10\n  log_step: [1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: line \d+"):
        load_config(PretrainConfig, bad)
    with pytest.raises(ConfigError, match=r"optimizer\.name"):
        load_config(PretrainConfig, CONF / "tera_tiny.yaml", ["optimizer.name=SGD"])
    with pytest.raises(ConfigError, match=r"runner\.total_steps"):
        load_config(PretrainConfig, CONF / "tera_tiny.yaml", ["runner.total_steps=many"])
    cfg = load_config(PretrainConfig, CONF / "tera_tiny.yaml", ["optimizer.lr=1e-4"])
    assert cfg.optimizer.lr == 1e-4


PRESETS = ["mockingjay_base", "tera_base", "aalbert_base", "apc_base",
           "mockingjay_tiny", "tera_tiny", "aalbert_tiny", "apc_tiny"]


@pytest.mark.parametrize("name", PRESETS)
def test_shipped_presets_dry_run(name):
    from s3prl.features import feature_dim
    from s3prl.train.pretrain import PretrainTask
    cfg = load_config(PretrainConfig, CONF / f"{name}.yaml")
    task = PretrainTask(cfg, feature_dim(cfg.features))
    n = sum(p.numel() for p in {id(p): p for p in task.model.parameters()}.values())
    if name in ("tera_base", "aalbert_base"):
        enc = sum(p.numel() for p in {id(p): p for p in task.model.transformer.parameters()}.values())
        # One BERT layer at H 768, I 3072 has 7,087,872 parameters (Mockingjay, arXiv 1910.12638):
        # 3 layers + input block (80 -> 768) = 21.33 M;
        # AALBERT: one shared layer + input block (80 -> 768, no stacking: what s3prl 0.4.x loads) = 7.15 M
        assert enc == (3 * 7087872 + 80 * 768 + 768 + 2 * 768 if name == "tera_base"
                       else 7087872 + 80 * 768 + 768 + 2 * 768), enc
    if name.endswith("tiny"):
        assert n < 5e5, n   # demo width (hidden 128, egs/librispeech/RESULTS.md), still CPU-sized
        assert cfg.runner.total_steps <= 8000   # ~15 min on one core (the 46-min demo budget, README)
    assert cfg.features.frame_shift == 10.0   # aligned with the 10 ms CPC labels
