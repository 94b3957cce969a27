"""Length-bucketing batch sampler: distributed-aware, seeded and resumable.

Follows the 2020 S3PRL bucketing (github.com/s3prl/s3prl @ b72a2cd9, dataloader.py): utterances
sorted by length, descending; consecutive utterances form a bucket of the *global* batch size
(`batch_size` x `world_size`); a bucket whose longest member is longer than `half_batch_above`
frames is split into two half buckets (S3PRL's HALF_BATCHSIZE_TIME, 1000 frames); bucket order is
shuffled every epoch with a generator seeded by `seed + epoch`.

Distributed: every rank builds the same bucket list and takes its own contiguous slice of each
bucket, so rank r's batches are slices of the batches a single process with the same global batch
would see (a bucket smaller than `world_size`, possible only at the tail, is dropped so that no
rank gets an empty batch). Resumable: `set_epoch(epoch, start=k)` skips the first k batches of
that epoch once, which is how the trainer restores the data order from a checkpoint.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import torch


class BucketBatchSampler(torch.utils.data.Sampler):
    """Yield lists of dataset indices (one batch of this rank) in bucketed, seeded order.

    Args:
        lengths: length in frames of each dataset item.
        batch_size: per-rank batch size.
        seed: shuffling seed (the epoch is added to it).
        shuffle: shuffle bucket order (training); False keeps longest-first order (dev/test).
        half_batch_above: split buckets whose longest item exceeds this many frames (0 = never).
        rank, world_size: this process's place in the distributed group.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, *, seed: int = 0, shuffle: bool = True,
                 half_batch_above: int = 0, rank: int = 0, world_size: int = 1):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.lengths = [int(x) for x in lengths]
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.half_batch_above = half_batch_above
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start = 0
        self.buckets = self._make_buckets()

    def _make_buckets(self) -> list[list[int]]:
        order = sorted(range(len(self.lengths)), key=lambda i: (-self.lengths[i], i))
        size = self.batch_size * self.world_size
        buckets = []
        for s in range(0, len(order), size):
            bucket = order[s:s + size]
            if self.half_batch_above and self.lengths[bucket[0]] > self.half_batch_above and len(bucket) > 1:
                half = (len(bucket) + 1) // 2
                parts = [bucket[:half], bucket[half:]]
            else:
                parts = [bucket]
            buckets.extend(p for p in parts if len(p) >= self.world_size)
        return buckets

    def _rank_slice(self, bucket: list[int]) -> list[int]:
        # Contiguous, nearly equal slices; every rank gets >= 1 item (buckets < world_size dropped).
        n, w = len(bucket), self.world_size
        lo = self.rank * n // w
        hi = (self.rank + 1) * n // w
        return bucket[lo:hi]

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's order; skip its first `start` batches (resume mid-epoch)."""
        self.epoch = epoch
        self.start = start

    def epoch_order(self, epoch: int) -> list[int]:
        """Bucket indices in the order epoch `epoch` visits them."""
        if not self.shuffle:
            return list(range(len(self.buckets)))
        g = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(len(self.buckets), generator=g).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        order = self.epoch_order(self.epoch)
        start, self.start = self.start, 0
        for b in order[start:]:
            yield self._rank_slice(self.buckets[b])

    def __len__(self) -> int:
        return len(self.buckets)
