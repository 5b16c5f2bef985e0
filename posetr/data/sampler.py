"""Training batches of one aspect-ratio group (mmdet 2.x ``GroupSampler`` / ``DistributedGroupSampler``).

Images wider than tall (group 1) and the others (group 0) are never mixed in a batch, so a batch is padded
less. Used by PETR's official training (opera's mmdet runner); ``data.aspect_ratio_groups``.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch.utils.data import Sampler


class AspectRatioGroupSampler(Sampler[int]):
    """Indices whose consecutive runs of ``batch_size`` lie in one group, split across processes.

    Per epoch (``set_epoch``; generator seeded with ``seed + epoch``, the same on every process): each group's
    indices are shuffled and padded, by repeating its own shuffled indices, to a multiple of
    ``batch_size * num_replicas``; the batches of all groups are shuffled together; process ``rank`` takes
    the ``rank``-th contiguous share. With ``DataLoader(batch_size=batch_size)`` every batch is one group and
    every process sees ``len(self)`` indices (DistributedSampler semantics: padded, disjoint up to the
    padding, reshuffled by ``set_epoch``).

    Args:
        groups: group id (0 / 1, ``CocoKeypoints.aspect_groups()``) of each dataset item.
        batch_size: images per process and step.
        num_replicas, rank: processes and this process (1, 0 without DDP).
        seed: base seed of the shuffles.

    Raises:
        ValueError: empty ``groups``, ``batch_size`` < 1 or ``rank`` outside [0, num_replicas).
    """

    def __init__(self, groups: Sequence[int], *, batch_size: int, num_replicas: int = 1, rank: int = 0,
                 seed: int = 0):
        if len(groups) == 0:
            raise ValueError("AspectRatioGroupSampler: no items to sample")
        if batch_size < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"AspectRatioGroupSampler: need batch_size >= 1 and 0 <= rank < num_replicas, got "
                             f"batch_size={batch_size}, rank={rank}, num_replicas={num_replicas}")
        self.groups = torch.as_tensor(list(groups), dtype=torch.long)
        self.batch_size, self.num_replicas, self.rank, self.seed = batch_size, num_replicas, rank, seed
        self.epoch = 0
        chunk = batch_size * num_replicas
        total = sum(math.ceil(int((self.groups == g).sum()) / chunk) * chunk for g in self.groups.unique().tolist())
        self.num_samples = total // num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        chunk = self.batch_size * self.num_replicas
        batches = []
        for group in self.groups.unique().tolist():
            members = torch.nonzero(self.groups == group).flatten()
            members = members[torch.randperm(len(members), generator=g)]
            padded = math.ceil(len(members) / chunk) * chunk
            members = members.repeat(math.ceil(padded / len(members)))[:padded]
            batches.extend(members.view(-1, self.batch_size))
        order = torch.randperm(len(batches), generator=g)
        indices = torch.cat([batches[i] for i in order.tolist()])
        share = indices[self.rank * self.num_samples:(self.rank + 1) * self.num_samples]
        return iter(share.tolist())
