"""An upstream run on the fly, frozen, must hand the head exactly what a dump of the same upstream
hands it from feats.scp: the same input features, the same chunk context for long inputs, and
the `dataloader` section's per-utterance CMVN and deltas applied to the states (not to the
upstream's input). Plus the batched CMVN / deltas those rest on, and the fine-tuned upstream's
own learning rate (`input.upstream_lr`)."""
from __future__ import annotations

from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch
from torch import nn

from s3prl.data.dataset import FeatureDataset
from s3prl.downstream.config import InputConfig
from s3prl.downstream.task import feature_dataset, on_the_fly_representation
from s3prl.errors import UserError
from s3prl.features.cmvn import utterance_cmvn, utterance_cmvn_batch
from s3prl.features.deltas import add_deltas, add_deltas_batch
from s3prl.train.config import DataConfig, OptimizerConfig
from s3prl.train.optim import build_optimizer
from tests.conftest import write_tiny_tera


class Through(nn.Module):
    """A head that returns what it is given (the model's representation of each frame)."""
    frame_level = True

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(1, 1)   # a parameter, so an optimizer can be built over the model

    def forward(self, x, lengths):
        return x


def tiny_tera(path: Path, sequence_length: int) -> str:
    """A tiny TERA with a short sequence_length, so that 1-s inputs (98 frames) go through windows."""
    return write_tiny_tera(path, sequence_length)


# ------------------------------------------------------------------ batched CMVN and deltas
@pytest.mark.parametrize("order,window", [(1, 2), (2, 2), (1, 4)])
def test_batched_deltas_equal_kaldi_add_deltas_per_utterance(order, window):
    g = torch.Generator().manual_seed(order * 10 + window)
    lengths = torch.tensor([17, 3, 1, 9])
    x = torch.randn(4, 17, 5, generator=g)
    for b, n in enumerate(lengths.tolist()):
        x[b, n:] = 0.0
    out = add_deltas_batch(x, lengths, order, window)
    assert out.shape == (4, 17, 5 * (order + 1))
    for b, n in enumerate(lengths.tolist()):
        # each utterance's own edge frames are replicated, not the batch's padding
        torch.testing.assert_close(out[b, :n], add_deltas(x[b, :n], order, window), atol=1e-5, rtol=1e-5)
        assert torch.all(out[b, n:] == 0)


def test_batched_utterance_cmvn_and_its_gradient():
    g = torch.Generator().manual_seed(3)
    lengths = torch.tensor([12, 5])
    x = torch.randn(2, 12, 4, generator=g) * 3 + 7
    x[1, 5:] = 100.0          # padding must not count
    x[0, :, 2] = 4.0          # a constant dim: zero out, finite gradient
    x.requires_grad_(True)
    out = utterance_cmvn_batch(x, lengths)
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(out[b, :n], utterance_cmvn(x[b, :n].detach()), atol=1e-5, rtol=1e-5)
        assert torch.all(out[b, n:] == 0)
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


# -------------------------------------------------------------------- on the fly == dumped
def _vary_lengths(data: Path) -> None:
    """Cut the i-th utterance to 1 - 0.15 i seconds, so that an on-the-fly batch is padded."""
    import soundfile as sf

    lines = (data / "wav.scp").read_text().splitlines()
    durs = []
    for i, line in enumerate(lines):
        utt, path = line.split(maxsplit=1)
        x, sr = sf.read(path, dtype="float32")
        n = int(sr * (1.0 - 0.15 * i))
        sf.write(path, x[:n], sr, subtype="PCM_16")
        durs.append(f"{utt} {n / sr:g}\n")
    (data / "utt2dur").write_text("".join(durs))


def _dumped(tmp_path: Path, ckpt: str, data: Path, chunk_context: int,
            dc: DataConfig) -> tuple[dict[str, torch.Tensor], dict[str, np.ndarray]]:
    """-> (what FeatureDataset serves from the dump under `dc`, the raw ark matrices by kaldiio)."""
    from s3prl.dump import extract

    (tmp_path / "dump").mkdir()
    prefix = tmp_path / "dump" / "raw"
    # one utterance per pass here, all four in one padded batch on the fly
    [k] = extract(ckpt, data, prefix, layers="last", chunk_context=chunk_context, batch_size=1)
    d = tmp_path / "dump_dir"
    d.mkdir()
    (d / "feats.scp").write_text(Path(f"{prefix}.layer-{k}.scp").read_text())
    for f in ("utt2spk", "spk2utt"):
        (d / f).write_text((data / f).read_text())
    ds = FeatureDataset(d, cmvn=dc.cmvn, delta_order=dc.delta_order, delta_window=dc.delta_window)
    raw = {u: np.array(m) for u, m in kaldiio.load_scp(str(d / "feats.scp")).items()}
    assert set(raw) == set(ds.utts)
    return {ds[i]["utt"]: ds[i]["feats"] for i in range(len(ds))}, raw


def _on_the_fly(ckpt: str, data: Path, chunk_context: int, dc: DataConfig) -> dict[str, torch.Tensor]:
    rep = on_the_fly_representation(ckpt, InputConfig(layer="last", chunk_context=chunk_context), "cpu",
                                    "--data", dataloader=dc)
    fd = feature_dataset(str(data), dc, rep)
    items = [fd[i]["feats"] for i in range(len(fd))]
    lengths = torch.tensor([len(x) for x in items])
    batch = torch.zeros(len(items), int(lengths.max()), items[0].shape[1])
    for i, x in enumerate(items):
        batch[i, :len(x)] = x
    model = rep.model(Through()).eval()
    with torch.no_grad():
        out = model(batch, lengths)
    assert out.shape[-1] == rep.input_dim(fd)
    return {u: out[i, :int(lengths[i])] for i, u in enumerate(fd.utts)}


@pytest.mark.parametrize("chunk_context", [0, 4])
def test_frozen_on_the_fly_equals_dumped(tmp_path, make_data_dir, chunk_context):
    """Chunks (or windows with context) from each utterance's own length, per-utterance CMVN of the
    states, first-order deltas: the head gets the same frames either way (a batch of different
    lengths on the fly, length-sorted batches in the dump)."""
    ckpt = tiny_tera(tmp_path / "tera.ckpt", sequence_length=20)
    data = make_data_dir(tmp_path / "data", speakers=("1001", "1002"), utts_per_speaker=2, duration=1.0, seed=4)
    _vary_lengths(data)
    dc = DataConfig(cmvn="utterance", delta_order=1)
    dumped, ark = _dumped(tmp_path, ckpt, data, chunk_context, dc)
    otf = _on_the_fly(ckpt, data, chunk_context, dc)
    assert set(otf) == set(dumped) and len({len(x) for x in dumped.values()}) == 4
    for u in dumped:
        assert otf[u].shape == dumped[u].shape == (dumped[u].shape[0], 64)
        torch.testing.assert_close(otf[u], dumped[u].float(), atol=2e-4, rtol=1e-4)
    # the test can fail: the other chunking, or no CMVN of the states, differ
    other = _on_the_fly(ckpt, data, 4 - chunk_context, dc)
    assert max(float((other[u] - dumped[u]).abs().max()) for u in dumped) > 1e-2
    raw = _on_the_fly(ckpt, data, chunk_context, DataConfig(cmvn="none", delta_order=1))
    assert max(float((raw[u] - dumped[u]).abs().max()) for u in dumped) > 1e-2
    # with nothing to apply, the head reads the states the ark holds (read back by kaldiio)
    plain = _on_the_fly(ckpt, data, chunk_context, DataConfig(cmvn="none"))
    for u, m in ark.items():
        assert m.shape == (len(dumped[u]), 32)
        torch.testing.assert_close(plain[u], torch.from_numpy(m), atol=2e-4, rtol=1e-4)


def test_baseline_on_the_fly_takes_deltas(tmp_path, make_data_dir):
    # a baseline's states are its features: the dataset normalises them (any CMVN), the model
    # appends the deltas, and the head's width is 80 x 2
    data = make_data_dir(tmp_path / "data", speakers=("1001",), utts_per_speaker=2, duration=0.5)
    dc = DataConfig(cmvn="global", norm_vars=True, delta_order=1)
    otf = _on_the_fly("fbank", data, 0, dc)
    ref = FeatureDataset(data, features=on_the_fly_representation("fbank", InputConfig(), "cpu", "--data").features,
                         cmvn="global", norm_vars=True, delta_order=1)
    for i, u in enumerate(ref.utts):
        torch.testing.assert_close(otf[u], ref[i]["feats"].float(), atol=1e-4, rtol=1e-4)


def test_state_cmvn_needing_statistics_is_refused_on_the_fly(tmp_path):
    ckpt = tiny_tera(tmp_path / "tera.ckpt", sequence_length=20)
    for cmvn in ("global", "speaker"):
        with pytest.raises(UserError, match=rf"dataloader\.cmvn: '{cmvn}' .*needs dumped representations"):
            on_the_fly_representation(ckpt, InputConfig(), "cpu", "--data", dataloader=DataConfig(cmvn=cmvn))


def test_chunk_context_is_checked(tmp_path):
    ckpt = tiny_tera(tmp_path / "tera.ckpt", sequence_length=20)
    with pytest.raises(UserError, match=r"input\.chunk_context: .*chunk context 10 must be"):
        on_the_fly_representation(ckpt, InputConfig(chunk_context=10), "cpu", "--data")
    with pytest.raises(ValueError, match="chunk_context must be >= 0"):
        InputConfig(chunk_context=-1)


# ------------------------------------------------------------------------ upstream_lr
def test_fine_tuned_upstream_trains_at_its_own_lr(tmp_path):
    ckpt = tiny_tera(tmp_path / "tera.ckpt", sequence_length=20)
    rep = on_the_fly_representation(ckpt, InputConfig(fine_tune=True, upstream_lr=1e-4), "cpu", "--data",
                                    dataloader=DataConfig(cmvn="utterance"))
    model = rep.model(Through())
    opt = build_optimizer(model, OptimizerConfig(name="Adam", lr=2e-3))
    up = {id(p) for p in model.upstream.parameters() if p.requires_grad}
    lrs = {}
    for g in opt.param_groups:
        for p in g["params"]:
            lrs[id(p)] = g["lr"]
    assert up and all(lrs[i] == 1e-4 for i in up)
    rest = [lrs[id(p)] for p in model.parameters() if p.requires_grad and id(p) not in up]
    assert rest and all(lr == 2e-3 for lr in rest)
    # without it every parameter shares optimizer.lr; without fine-tuning it is refused
    same = build_optimizer(on_the_fly_representation(ckpt, InputConfig(fine_tune=True), "cpu", "--data").model(Through()),
                           OptimizerConfig(name="Adam", lr=2e-3))
    assert {g["lr"] for g in same.param_groups} == {2e-3}
    with pytest.raises(ValueError, match="upstream_lr .*fine_tune: true"):
        InputConfig(upstream_lr=1e-4)


def test_states_transform_cannot_be_skipped(tmp_path, make_data_dir):
    # a representation built without its dataloader section would silently drop the CMVN / deltas
    ckpt = tiny_tera(tmp_path / "tera.ckpt", sequence_length=20)
    data = make_data_dir(tmp_path / "data", speakers=("1001",), utts_per_speaker=1)
    rep = on_the_fly_representation(ckpt, InputConfig(), "cpu", "--data")
    with pytest.raises(ValueError, match="without the dataloader section"):
        feature_dataset(str(data), DataConfig(cmvn="utterance"), rep)
    feature_dataset(str(data), DataConfig(cmvn="none"), rep)     # nothing to apply: fine
