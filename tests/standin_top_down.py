"""A tiny stand-in top-down model that follows docs/model_interfaces.md (top-down), so the crop
pipeline, evaluation, flip test and CLI are tested without Poseur / TFPose: conv features -> pooled ->
K keypoints (x, y in the crop, normalised) and K keypoint scores; L1 loss weighted by target_weight; a
postprocessor that fuses the flip test by averaging (Poseur's ``default`` fusion)."""
import torch
from torch import nn

from posetr.data.crop_geometry import crop_to_image
from posetr.data.keypoints import keypoint_info


class TinyTopDownModel(nn.Module):
    def __init__(self, num_keypoints=17):
        super().__init__()
        self.k = num_keypoints
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d((4, 3)), nn.Flatten())
        self.head = nn.Linear(8 * 12, num_keypoints * 3)

    def forward(self, images, masks):
        out = self.head(self.backbone(images)).view(len(images), self.k, 3)
        return {"pred_keypoints": out[..., :2].sigmoid(), "pred_scores": out[..., 2].sigmoid()}


class TinyTopDownCriterion(nn.Module):
    weight_dict = {"loss_kpt": 1.0}

    def forward(self, outputs, targets):
        gt = torch.stack([t["keypoints"][:, :2] for t in targets])
        weight = torch.stack([t["target_weight"] for t in targets])[..., None]
        l1 = ((outputs["pred_keypoints"] - gt).abs() * weight).sum() / weight.sum().clamp(min=1)
        return {"loss_kpt": l1}


def unflip(keypoints, flip_index):
    """Keypoints predicted on the mirrored crop, back in the crop: x -> 1 - x (Poseur's rule), left/right
    swapped."""
    out = keypoints[:, flip_index].clone()
    out[..., 0] = 1 - out[..., 0]
    return out


class TinyTopDownPostProcessor(nn.Module):
    """``(outputs, targets, flipped_outputs=None) -> [{"keypoints": Float[K, 3] pixels + score, "score"}]``;
    instance score = box score x mean keypoint score."""

    def __init__(self, flip_index):
        super().__init__()
        self.flip_index = list(flip_index)

    @torch.no_grad()
    def forward(self, outputs, targets, flipped_outputs=None):
        kpts, scores = outputs["pred_keypoints"], outputs["pred_scores"]
        if flipped_outputs is not None:
            kpts = (kpts + unflip(flipped_outputs["pred_keypoints"], self.flip_index)) / 2
            scores = (scores + flipped_outputs["pred_scores"][:, self.flip_index]) / 2
        center = torch.stack([t["center"] for t in targets]).to(kpts)
        scale = torch.stack([t["scale"] for t in targets]).to(kpts)
        xy = crop_to_image(kpts, center, scale)
        return [{"keypoints": torch.cat([xy[b], scores[b, :, None]], dim=-1),
                 "score": t["bbox_score"] * scores[b].mean()} for b, t in enumerate(targets)]


def build_tiny_top_down(model_cfg):
    torch.manual_seed(0)
    flip_index = keypoint_info(model_cfg.dataset).flip_index()
    return (TinyTopDownModel(num_keypoints=model_cfg.num_keypoints), TinyTopDownCriterion(),
            TinyTopDownPostProcessor(flip_index))


class OracleTopDownModel(nn.Module):
    """Returns the given crop keypoints (Float[B, K, 2] per batch, in loader order) with scores 0.9.
    With ``flip_index``, calls alternate: the crops, then the mirrored crops, for which it returns the
    mirrored keypoints; ``seen`` keeps every call's images."""

    def __init__(self, batches, flip_index=None):
        super().__init__()
        self.batches, self.flip_index, self.seen, self.calls = list(batches), flip_index, [], 0
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, images, masks):
        self.seen.append(images.clone())
        if self.flip_index is None:
            kpts = self.batches.pop(0)
        elif self.calls % 2 == 0:
            kpts = self.batches[0]
        else:  # the mirrored crops: the mirrored keypoints (unflip is its own inverse)
            kpts = unflip(self.batches.pop(0), self.flip_index)
        self.calls += 1
        return {"pred_keypoints": kpts.clone(), "pred_scores": torch.full(kpts.shape[:2], 0.9)}
