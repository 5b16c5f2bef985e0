"""Loss normalisation across processes."""
from __future__ import annotations

import torch
import torch.distributed as dist


def global_count(count: float, device) -> float:
    """``count`` (e.g. people in this process's batch) averaged over the processes of torch.distributed
    when it is initialised, at least 1 (DETR's ``num_boxes`` in ``SetCriterion.forward``)."""
    n = torch.as_tensor([count], dtype=torch.float32, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(n)
        n = n / dist.get_world_size()
    return max(n.item(), 1.0)
