"""Poseur's losses: residual log-likelihood estimation (RLE) with RealNVP flows, the official
``RLELoss_poseur`` (``mmpose/models/losses/rle_loss.py``) as ``poseur_head.py`` calls it (spec section 4).

For predictions mu (B, Q, 2), scales sigma in (0, 1) (B, Q, 2), targets mu_g and per-axis weights w (the
crop's ``target_weight`` for both axes), with x_bar = (mu - mu_g) / sigma:

    nf_d = (log sigma_d - log G(x_bar)) * w_d              log G: the flow's density (one per keypoint)
    q_d  = (log(sqrt(2 pi) sigma_d) + |mu_d - mu_g,d| / (sqrt(2) sigma_d + 1e-9)) * w_d
    term = sum over b, q, d of (nf_d + q_d) / N

with N = B (``rle_normalize="batch"``, the official ``loss.sum() / len(loss)``) or B x Q ("queries"); a
term whose weights are all 0 is the plain sum. Losses: ``enc_rle_loss`` (the coarse FC's mu_f, sigma_f with
``enc_flow``, Q = K) and ``dec_rle_loss_{l}`` for every decoder layer (``dec_flow``, shared by the layers,
Q = G K: every query group is supervised with the same targets), weights ``loss_enc`` and ``loss_dec``.

The flows are the criterion's parameters (training-only, 2 x 53,784): the trainer optimises, checkpoints
and (under DDP) averages them with the model's (``posetr.engine.train``).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from posetr.models.common.top_down import stack_targets
from posetr.models.poseur.realnvp import RealNVP

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def rle_loss(flow: RealNVP, mu: torch.Tensor, sigma: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
             *, normalize: str) -> torch.Tensor:
    """One RLE term (module docstring).

    Args:
        flow: the density of x_bar. mu, sigma, target, weight (Float[B, Q, 2]): normalised crop coordinates.
        normalize: "batch" (divide by B) | "queries" (by B x Q).

    Returns:
        a scalar.
    """
    B, Q, _ = mu.shape
    error = mu - target
    log_phi = flow.log_prob((error / sigma).reshape(-1, 2)).view(B, Q, 1)
    nf = (torch.log(sigma) - log_phi) * weight
    q = (torch.log(sigma) + _LOG_SQRT_2PI + error.abs() / (math.sqrt(2) * sigma + 1e-9)) * weight
    count = float(B if normalize == "batch" else B * Q)
    # no host sync on the hot path: divide by 1 when every weight is 0
    return (nf + q).sum() / torch.where(weight.sum() > 0, weight.new_tensor(count), weight.new_tensor(1.0))


class PoseurCriterion(nn.Module):
    """Forward: (outputs of :class:`posetr.models.poseur.model.Poseur`, targets of the top-down contract: per
    crop ``keypoints`` Float[K, 3] normalised to the crop, ``target_weight`` Float[K]) -> dict of unweighted
    scalar losses; ``weight_dict`` maps every name to its weight.

    Raises:
        ValueError: a target whose ``keypoints`` / ``target_weight`` shape does not match K (names the crop).
    """

    def __init__(self, *, num_keypoints: int, num_dec_layers: int, normalize: str, loss_enc: float,
                 loss_dec: float):
        super().__init__()
        self.num_keypoints = num_keypoints
        self.normalize = normalize
        self.enc_flow = RealNVP()
        self.dec_flow = RealNVP()
        self.weight_dict = {"enc_rle_loss": loss_enc}
        for layer in range(num_dec_layers):
            self.weight_dict[f"dec_rle_loss_{layer}"] = loss_dec

    def forward(self, outputs: dict, targets: list[dict]) -> dict:
        dtype = self.enc_flow.s[0][0].weight.dtype  # the flows' (float32 also under bf16 autocast)
        coarse = outputs["coarse_keypoints"].to(dtype)
        gt, weight = stack_targets(targets, num_keypoints=self.num_keypoints, like=coarse)
        weight = weight[..., None].expand_as(gt)  # the same weight for x and y
        losses = {"enc_rle_loss": rle_loss(self.enc_flow, coarse, outputs["coarse_sigma"].to(dtype), gt, weight,
                                           normalize=self.normalize)}
        dec_keypoints, dec_sigma = outputs["dec_keypoints"].to(dtype), outputs["dec_sigma"].to(dtype)
        groups = dec_keypoints.shape[2] // self.num_keypoints
        gt_groups, weight_groups = gt.repeat(1, groups, 1), weight.repeat(1, groups, 1)
        for layer in range(dec_keypoints.shape[0]):
            losses[f"dec_rle_loss_{layer}"] = rle_loss(self.dec_flow, dec_keypoints[layer], dec_sigma[layer],
                                                       gt_groups, weight_groups, normalize=self.normalize)
        return losses


def build_criterion(cfg) -> PoseurCriterion:
    """Criterion of ``cfg`` (PoseurConfig)."""
    return PoseurCriterion(num_keypoints=cfg.num_keypoints, num_dec_layers=cfg.dec_layers,
                           normalize=cfg.rle_normalize, loss_enc=cfg.loss_enc, loss_dec=cfg.loss_dec)
