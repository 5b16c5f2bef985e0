"""PETR's inference output (opera ``PETRHead._get_bboxes_single``): top queries by score, joint-refined
keypoints in original-image pixels, no NMS."""
from __future__ import annotations

import torch
from torch import nn


class PostProcess(nn.Module):
    """Forward: outputs of :class:`posetr.models.petr.PETR`, orig_sizes Long[B, 2] (h, w) -> list of B dicts:

    - ``scores`` Float[D]: sigmoid person scores, descending;
    - ``keypoints`` Float[D, K, 3]: (x, y) in original-image pixels (the joint decoder's keypoints when
      present, else the pose decoder's) and a per-keypoint score (the person score: PETR scores people,
      not joints).

    D = min(num_detections, Q).
    """

    def __init__(self, *, num_detections: int = 100):
        super().__init__()
        self.num_detections = num_detections

    @torch.no_grad()
    def forward(self, outputs: dict, orig_sizes: torch.Tensor) -> list:
        scores = outputs["pred_logits"][..., 0].sigmoid()
        keypoints = outputs.get("pred_keypoints_refined", outputs["pred_keypoints"])
        B, Q, K, _ = keypoints.shape
        top_scores, top = scores.topk(min(self.num_detections, Q), dim=1)
        kpts = torch.gather(keypoints, 1, top[:, :, None, None].expand(-1, -1, K, 2))
        hw = orig_sizes.to(kpts)
        kpts = kpts * torch.stack([hw[:, 1], hw[:, 0]], -1)[:, None, None, :]
        results = []
        for b in range(B):
            per_kpt = top_scores[b][:, None, None].expand(-1, K, 1)
            results.append({"scores": top_scores[b], "keypoints": torch.cat([kpts[b], per_kpt], -1)})
        return results


def build_postprocess(cfg) -> PostProcess:
    """Postprocessor returning ``cfg.num_detections`` people per image (``cfg``: PETRConfig)."""
    return PostProcess(num_detections=cfg.num_detections)
