"""Small tensor functions the models share."""
from __future__ import annotations

import torch


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """log(x / (1 - x)) with x clamped to [0, 1] and both terms to >= eps (Deformable DETR
    ``util/misc.py``), so that ``sigmoid(inverse_sigmoid(ref) + delta)`` refines a normalised point."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))
