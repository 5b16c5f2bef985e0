"""TFPose's postprocessor: last-layer keypoints (flip-fused) back to image pixels, with scores.

[D] (the paper gives no details): with the flip test the flipped crop's keypoints are un-flipped (x
mirrored by ``flip_convention``, left/right joints swapped with the dataset's flip pairs) and averaged
with the plain ones; crop coordinates map back with ``keypoints_to_image`` (mmpose ``transform_preds``).
TFPose regresses no confidence, so every keypoint score is 1; the instance score is the person box's
score (``instance_score="box"``, equal to SimpleBaseline's box_score * mean keypoint score) or 1.
"""
from __future__ import annotations

import torch
from torch import nn

from posetr.models.common.top_down import keypoints_to_image, unflip_keypoints

INSTANCE_SCORES = ("box", "one")


class TFPosePostProcess(nn.Module):
    """Forward: (outputs of TFPose, targets of the top-down contract with ``center``, ``scale`` Float[2]
    pixels and ``bbox_score``, flipped_outputs: the outputs on ``images.flip(-1)`` or None) -> list of B
    dicts ``{"keypoints": Float[K, 3] (x, y in original-image pixels, score 1), "score": float}``.

    Args:
        flip_index (list[int]): the dataset's flip permutation; flip_convention, instance_score: see
            TFPoseConfig.
    """

    def __init__(self, *, flip_index, flip_convention: str, instance_score: str):
        super().__init__()
        self.flip_index = list(flip_index)
        self.flip_convention = flip_convention
        self.instance_score = instance_score

    @torch.no_grad()
    def forward(self, outputs: dict, targets: list[dict], flipped_outputs: dict | None = None) -> list[dict]:
        keypoints = outputs["pred_keypoints"].float()
        if flipped_outputs is not None:
            flipped = unflip_keypoints(flipped_outputs["pred_keypoints"].float(), self.flip_index,
                                       width=outputs["input_size"][1], convention=self.flip_convention)
            keypoints = (keypoints + flipped) / 2
        pixels = keypoints_to_image(keypoints, targets)
        scores = torch.ones(pixels.shape[:-1] + (1,))
        results = []
        for b, t in enumerate(targets):
            score = float(t["bbox_score"]) if self.instance_score == "box" else 1.0
            results.append({"keypoints": torch.cat([pixels[b], scores[b]], -1), "score": score})
        return results


def build_postprocess(cfg) -> TFPosePostProcess:
    """Postprocessor of ``cfg`` (TFPoseConfig)."""
    from posetr.data.keypoints import keypoint_info

    return TFPosePostProcess(flip_index=keypoint_info(cfg.dataset).flip_index(), flip_convention=cfg.flip_convention,
                             instance_score=cfg.instance_score)
