"""RealNVP flow of Poseur's residual log-likelihood estimation (RLE; Li et al., ICCV 2021), as the official
``mmpose/models/heads/rle_regression_head.py`` (``RealNVP``, ``nets``, ``nett``) is used by
``poseur_head.py``: 6 affine couplings on 2-D points with alternating masks [0, 1], [1, 0], scale nets
Linear(2, 64)-LeakyReLU-Linear(64, 64)-LeakyReLU-Linear(64, 2)-Tanh and translation nets without the Tanh,
and a standard normal prior with mean (0.5, 0.5) (Poseur's; RLE's is 0). The nets keep PyTorch's default
Linear initialisation: the gain-0.01 ``_init`` helper is never called by Poseur's head.
"""
from __future__ import annotations

import math

import torch
from torch import nn

NUM_COUPLINGS = 6
HIDDEN = 64
PRIOR_MEAN = 0.5


def _coupling_net(*, tanh: bool) -> nn.Sequential:
    layers = [nn.Linear(2, HIDDEN), nn.LeakyReLU(), nn.Linear(HIDDEN, HIDDEN), nn.LeakyReLU(), nn.Linear(HIDDEN, 2)]
    if tanh:
        layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class RealNVP(nn.Module):
    """A 2-D RealNVP density log G(x) (53,784 parameters).

    Parameters ``s.{i}`` / ``t.{i}`` and the buffer ``mask`` (Float[6, 2]) carry the official names.

    Forward (``log_prob``): x Float[N, 2] -> Float[N], log G(x) = log N(z; (0.5, 0.5), I) + log |det dz/dx|
    with z the latent point of x (the inverse pass, couplings 5..0).
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("mask", torch.tensor([[0.0, 1.0], [1.0, 0.0]] * (NUM_COUPLINGS // 2)))
        self.t = nn.ModuleList(_coupling_net(tanh=False) for _ in range(NUM_COUPLINGS))
        self.s = nn.ModuleList(_coupling_net(tanh=True) for _ in range(NUM_COUPLINGS))

    def inverse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Data -> latent (the official ``backward_p``): (z Float[N, 2], log_det Float[N] = log |det dz/dx|)."""
        log_det = x.new_zeros(x.shape[0])
        z = x
        for i in reversed(range(len(self.t))):
            mask = self.mask[i].to(x.dtype)
            z_masked = mask * z
            s = self.s[i](z_masked) * (1 - mask)
            t = self.t[i](z_masked) * (1 - mask)
            z = (1 - mask) * (z - t) * torch.exp(-s) + z_masked
            log_det = log_det - s.sum(dim=1)
        return z, log_det

    def forward_pass(self, z: torch.Tensor) -> torch.Tensor:
        """Latent -> data (the official ``forward_p``), the inverse of :meth:`inverse`."""
        x = z
        for i in range(len(self.t)):
            mask = self.mask[i].to(z.dtype)
            x_masked = x * mask
            s = self.s[i](x_masked) * (1 - mask)
            t = self.t[i](x_masked) * (1 - mask)
            x = x_masked + (1 - mask) * (x * torch.exp(s) + t)
        return x

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log G(x) of points x Float[N, 2] -> Float[N] (the official ``RealNVP.log_prob``)."""
        z, log_det = self.inverse(x)
        prior = -math.log(2 * math.pi) - 0.5 * (z - PRIOR_MEAN).pow(2).sum(dim=1)
        return prior + log_det

    forward = log_prob
