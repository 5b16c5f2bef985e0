"""Poseur's postprocessor: last-layer keypoints with their scores (flip-fused) back to image pixels, as the
official ``Poseur.forward_test`` and ``Poseur_noise_sample.decode_keypoints`` (spec section 6).

- Keypoint score without the flip test: mean over x, y of (1 - sigma).
- Flip test: the flipped crop's keypoints are un-flipped (x -> 1 - x with ``flip_convention="unit"``, the
  official; left/right joints swapped, sigmas swapped too), then fused:
  ``default``: keypoints and scores averaged; ``type2``: p = 0.7 (1 - e^(-0.2/sigma_x)) (1 - e^(-0.2/sigma_y))
  per view, keypoints (mu p^5 + mu_f p_f^5) / (p^5 + p_f^5 + 1e-10), score (p + p_f) / 2.
- Instance score (``rle_score``): box score + mean + max of the keypoint scores (additive; the paper's Eq. 5
  is the product box x mean).
"""
from __future__ import annotations

import torch
from torch import nn

from posetr.models.common.top_down import keypoints_to_image, unflip_keypoints

TYPE2_A = 0.2  # the official get_p's p_x (the paper's a in Eq. 8)
TYPE2_SCALE = 0.7
TYPE2_POWER = 5  # p_to_coord_index


def type2_confidence(sigma: torch.Tensor) -> torch.Tensor:
    """p = 0.7 (1 - exp(-0.2 / sigma_x)) (1 - exp(-0.2 / sigma_y)) of sigma Float[..., 2] -> Float[...]
    (the official ``Poseur.get_p``)."""
    p = 1 - torch.exp(-TYPE2_A / sigma)
    return TYPE2_SCALE * p[..., 0] * p[..., 1]


def fuse_flip(keypoints, sigma, flipped_keypoints, flipped_sigma, *, fusion: str):
    """Fused (keypoints Float[B, K, 2], scores Float[B, K]) of the plain and the un-flipped views (module
    docstring); ``fusion`` "default" | "type2"."""
    if fusion == "type2":
        p, p_flipped = type2_confidence(sigma), type2_confidence(flipped_sigma)
        w, w_flipped = p[..., None] ** TYPE2_POWER, p_flipped[..., None] ** TYPE2_POWER
        fused = (keypoints * w + flipped_keypoints * w_flipped) / (w + w_flipped + 1e-10)
        return fused, (p + p_flipped) / 2
    scores = ((1 - sigma).mean(-1) + (1 - flipped_sigma).mean(-1)) / 2
    return (keypoints + flipped_keypoints) / 2, scores


class PoseurPostProcess(nn.Module):
    """Forward: (outputs of Poseur, targets of the top-down contract with ``center``, ``scale`` Float[2]
    pixels and ``bbox_score``, flipped_outputs: the outputs on ``images.flip(-1)`` or None) -> list of B dicts
    ``{"keypoints": Float[K, 3] (x, y in original-image pixels, keypoint score), "score": float}``.

    Args:
        flip_index (list[int]): the dataset's flip permutation; flip_fuse, flip_convention: see PoseurConfig.
    """

    def __init__(self, *, flip_index, flip_fuse: str, flip_convention: str):
        super().__init__()
        self.flip_index = list(flip_index)
        self.flip_fuse = flip_fuse
        self.flip_convention = flip_convention

    @torch.no_grad()
    def forward(self, outputs: dict, targets: list[dict], flipped_outputs: dict | None = None) -> list[dict]:
        keypoints, sigma = outputs["pred_keypoints"].float(), outputs["pred_sigma"].float()
        if flipped_outputs is None:
            scores = (1 - sigma).mean(-1)
        else:
            flipped = unflip_keypoints(flipped_outputs["pred_keypoints"].float(), self.flip_index,
                                       width=outputs["input_size"][1], convention=self.flip_convention)
            flipped_sigma = flipped_outputs["pred_sigma"].float()[:, self.flip_index]
            keypoints, scores = fuse_flip(keypoints, sigma, flipped, flipped_sigma, fusion=self.flip_fuse)
        pixels = keypoints_to_image(keypoints, targets)
        scores = scores.cpu()
        results = []
        for b, t in enumerate(targets):
            score = float(t["bbox_score"]) + float(scores[b].mean()) + float(scores[b].max())
            results.append({"keypoints": torch.cat([pixels[b], scores[b, :, None]], -1), "score": score})
        return results


def build_postprocess(cfg) -> PoseurPostProcess:
    """Postprocessor of ``cfg`` (PoseurConfig)."""
    from posetr.data.keypoints import keypoint_info

    return PoseurPostProcess(flip_index=keypoint_info(cfg.dataset).flip_index(), flip_fuse=cfg.flip_fuse,
                             flip_convention=cfg.flip_convention)
