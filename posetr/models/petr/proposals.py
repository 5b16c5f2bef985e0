"""Two-stage initialisation of PETR: every encoder token proposes a person, the top-k seed the pose decoder.

opera ``PETRTransformer.gen_encoder_output_proposals`` + the extra class/keypoint branches: each token's
proposal is its pixel centre (normalised to the unpadded image); the token's memory goes through
Linear + LayerNorm, a class head scores it and a keypoint MLP places K keypoints relative to the centre
(in inverse-sigmoid space). Tokens in padding or within 1% of the border are invalid. The top
``num_queries`` valid tokens by score give the decoder's (detached) initial keypoints; the query content
and position are learned embeddings (PETR).
"""
from __future__ import annotations

import torch
from torch import nn

from posetr.models.common.deformable_decoder import keypoint_mlp
from posetr.models.petr.pose_decoder import class_head


def proposal_centres(padding_mask: torch.Tensor, spatial_shapes: torch.Tensor):
    """Token centres in inverse-sigmoid space and their validity.

    Args:
        padding_mask (Bool[B, S]): True at padding.
        spatial_shapes (Long[L, 2]): (H, W) per level.

    Returns:
        (Float[B, S, 2] logit(x), logit(y) of the centre normalised to the unpadded map (+inf where invalid),
        Bool[B, S] valid).
    """
    B = padding_mask.shape[0]
    centres, start = [], 0
    for H, W in spatial_shapes.tolist():
        mask = padding_mask[:, start:start + H * W].view(B, H, W)
        valid_h = (~mask[:, :, 0]).sum(1)
        valid_w = (~mask[:, 0, :]).sum(1)
        ys, xs = torch.meshgrid(
            torch.arange(H, dtype=torch.float32, device=mask.device),
            torch.arange(W, dtype=torch.float32, device=mask.device),
            indexing="ij",
        )
        grid = torch.stack([xs, ys], -1)[None] + 0.5
        scale = torch.stack([valid_w, valid_h], -1).view(B, 1, 1, 2).float()
        centres.append((grid / scale).view(B, -1, 2))
        start += H * W
    centres = torch.cat(centres, 1)
    valid = ((centres > 0.01) & (centres < 0.99)).all(-1) & ~padding_mask
    logits = torch.log(centres / (1 - centres)).masked_fill(~valid[..., None], float("inf"))
    return logits, valid


class ProposalHead(nn.Module):
    """Encoder proposals and top-k query selection.

    Forward: memory Float[B, S, C], padding_mask Bool[B, S], spatial_shapes Long[L, 2] ->
    dict with ``pred_logits`` Float[B, S, 1], ``pred_keypoints`` Float[B, S, K, 2] (every token's
    proposal, for the proposal loss) and ``init_keypoints`` Float[B, Q, K, 2] (detached, top-Q valid
    tokens by score).
    """

    def __init__(self, *, d_model: int, num_keypoints: int, num_queries: int, kpt_hidden: int, num_kpt_fcs: int):
        super().__init__()
        self.num_keypoints = num_keypoints
        self.num_queries = num_queries
        self.output = nn.Linear(d_model, d_model)
        self.output_norm = nn.LayerNorm(d_model)
        self.class_head = class_head(d_model)
        self.kpt_head = keypoint_mlp(d_model=d_model, hidden=kpt_hidden, num_hidden=num_kpt_fcs,
                                     out=2 * num_keypoints)

    def forward(self, memory, padding_mask, spatial_shapes):
        B, S, _ = memory.shape
        K = self.num_keypoints
        centres, valid = proposal_centres(padding_mask, spatial_shapes)
        feats = self.output_norm(self.output(memory.masked_fill(~valid[..., None], 0.0)))
        logits = self.class_head(feats)
        delta = self.kpt_head(feats).view(B, S, K, 2)
        # Invalid tokens sit at +inf (sigmoid 1); clamp so L1 costs and gradients stay finite.
        unact = (delta + centres[:, :, None, :]).clamp(max=1e4)
        keypoints = unact.sigmoid()
        k = min(self.num_queries, S)
        scores = logits[..., 0].detach().masked_fill(~valid, float("-inf"))
        top = scores.topk(k, dim=1).indices
        init = torch.gather(keypoints.detach(), 1, top[:, :, None, None].expand(B, k, K, 2))
        return {"pred_logits": logits, "pred_keypoints": keypoints, "init_keypoints": init}


def build_proposal_head(cfg) -> ProposalHead:
    """Proposal head of ``cfg`` (PETRConfig)."""
    return ProposalHead(d_model=cfg.d_model, num_keypoints=cfg.num_keypoints, num_queries=cfg.num_queries,
                        kpt_hidden=cfg.kpt_branch_hidden, num_kpt_fcs=cfg.num_kpt_fcs)
