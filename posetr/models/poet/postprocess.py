"""POET's inference output (amathislab/poet ``models/poet.py`` ``PostProcess``): softmax scores, decoded
joints in original-image pixels, no threshold and no NMS."""
from __future__ import annotations

import torch
from torch import nn

from posetr.models.poet.codec import decode_keypoints, split_prediction


class PostProcess(nn.Module):
    """Forward: outputs of :class:`~posetr.models.poet.model.POET`, orig_sizes Long[B, 2] (h, w) -> list
    of B dicts, people by descending score:

    - ``scores`` Float[D]: softmax probability of the person class;
    - ``keypoints`` Float[D, K, 3]: (x, y) = (c + 2 (d' - 0.5)) * (w, h) of the original image, and 1 as
      every joint's score (the official code sets the visibility column to 1).

    ``class_head="binary"``: D = N, every query. ``class_head="official"``: the official code returns all N
    queries with score max(p_0, p_1) and label argmax over {0, 1}, and writes the label as the COCO
    ``category_id``; COCOeval ignores the label-0 ("person without a visible joint") results, since the
    ground truth has only category 1. Here those queries are left out, so D <= N and COCOeval sees exactly
    the official results (score p_1).
    """

    def __init__(self, *, class_head: str):
        super().__init__()
        self.class_head = class_head

    @torch.no_grad()
    def forward(self, outputs: dict, orig_sizes: torch.Tensor) -> list:
        prob = outputs["pred_logits"].float().softmax(-1)
        if self.class_head == "official":
            scores, labels = prob[..., :-1].max(-1)
            keep = labels == 1
        else:
            scores = prob[..., 0]
            keep = torch.ones_like(scores, dtype=torch.bool)
        center, offsets, _ = split_prediction(outputs["pred_kpts"].float())
        hw = orig_sizes.to(center)
        joints = decode_keypoints(center, offsets) * torch.stack([hw[:, 1], hw[:, 0]], -1)[:, None, None, :]
        results = []
        for b in range(joints.shape[0]):
            s = scores[b][keep[b]]
            order = s.argsort(descending=True)
            kpts = joints[b][keep[b]][order]
            results.append({"scores": s[order], "keypoints": torch.cat([kpts, torch.ones_like(kpts[..., :1])], -1)})
        return results


def build_postprocess(cfg) -> PostProcess:
    """Postprocessor of ``cfg`` (POETConfig)."""
    return PostProcess(class_head=cfg.class_head)
