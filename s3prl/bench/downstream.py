"""Benchmark 6: downstream training on dumped ark/scp, share of step time spent waiting for data.

A dump-like data dir (feats.scp over one ark, utt2num_frames, utt2spk, cmvn.scp) is read through
the same classes the phone task uses (FeatureDataset with speaker CMVN, LabeledFeatureDataset,
BucketBatchSampler, collate_labeled) and a linear frame head trains on it (the CPC phone
protocol). Wait = time blocked in next(loader); step = forward, loss, backward, Adam update.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch


def write_dump_dir(d: Path, *, num_utts: int, dim: int, min_frames: int, max_frames: int, seed: int) -> dict:
    from s3prl.data.ark import ArkWriter, write_cmvn_ark
    from s3prl.features.cmvn import accumulate, init_stats

    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels, stats, n2f, u2s = {}, {}, {}, {}
    with ArkWriter(d / "feats.ark", d / "feats.scp.tmp") as w:
        for i in range(num_utts):
            spk = f"spk{i % 8:02d}"
            utt = f"{spk}-utt{i:05d}"
            n = int(rng.integers(min_frames, max_frames + 1))
            m = rng.standard_normal((n, dim)).astype(np.float32)
            w.write(utt, m)
            st = stats.setdefault(spk, init_stats(dim))
            accumulate(st, m)
            labels[utt] = rng.integers(0, 41, n).astype(np.int64)
            n2f[utt], u2s[utt] = n, spk
    keys = sorted(n2f, key=lambda k: k.encode())
    scp = dict(line.split(" ", 1) for line in (d / "feats.scp.tmp").read_text().splitlines())
    (d / "feats.scp").write_text("".join(f"{u} {scp[u]}\n" for u in keys))
    (d / "feats.scp.tmp").unlink()
    (d / "utt2num_frames").write_text("".join(f"{u} {n2f[u]}\n" for u in keys))
    (d / "utt2spk").write_text("".join(f"{u} {u2s[u]}\n" for u in keys))
    spk2utt: dict[str, list[str]] = {}
    for u in keys:
        spk2utt.setdefault(u2s[u], []).append(u)
    (d / "spk2utt").write_text("".join(f"{s} {' '.join(v)}\n" for s, v in sorted(spk2utt.items())))
    write_cmvn_ark(d / "cmvn.ark", d / "cmvn.scp", stats)
    (d / "feats_dim").write_text(f"{dim}\n")
    (d / "frame_shift").write_text("0.01\n")
    return labels


def bench_downstream(work: Path, *, num_utts: int = 96, dim: int = 768, min_frames: int = 300,
                     max_frames: int = 1200, batch_size: int = 8, workers=(0, 2), seed: int = 5) -> dict:
    from s3prl.data.dataset import FeatureDataset
    from s3prl.data.sampler import BucketBatchSampler
    from s3prl.downstream.heads import HeadConfig
    from s3prl.downstream.data import IGNORE_INDEX, LabeledFeatureDataset, collate_labeled
    from s3prl.downstream.heads import build_head

    d = Path(work) / "dump_dir"
    labels = write_dump_dir(d, num_utts=num_utts, dim=dim, min_frames=min_frames, max_frames=max_frames,
                            seed=seed)
    fd = FeatureDataset(d, features=None, cmvn="speaker", seed=seed)
    ds = LabeledFeatureDataset(fd, labels, frame_labels=True)
    rows = []
    for nw in workers:
        torch.manual_seed(seed)
        head = build_head(HeadConfig(name="linear"), dim, 41)
        opt = torch.optim.Adam(head.parameters(), lr=1e-3)
        sampler = BucketBatchSampler(ds.bucket_lengths(), batch_size, seed=seed, shuffle=True)
        loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=collate_labeled,
                                             num_workers=nw)
        wait = step = 0.0
        t_all = time.perf_counter()
        it = iter(loader)
        nb = 0
        while True:
            t0 = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                break
            t1 = time.perf_counter()
            logits = head(batch.feats, batch.lengths)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                     batch.labels.reshape(-1), ignore_index=IGNORE_INDEX)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            t2 = time.perf_counter()
            wait += t1 - t0
            step += t2 - t1
            nb += 1
        total = time.perf_counter() - t_all
        rows.append({"num_workers": nw, "batches": nb, "wait_seconds": wait, "compute_seconds": step,
                     "total_seconds": total, "wait_share": wait / (wait + step)})
    return {"num_utts": num_utts, "dim": dim, "batch_size": batch_size, "head": "linear", "rows": rows}
