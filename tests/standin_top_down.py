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


def jittered_detections(boxes, *, seed=0, per_box=2, scores=(0.5, 1.0)):
    """A person-detection list (COCO results format) with ``per_box`` detections per (image_id, [x, y, w, h])
    of ``boxes``: the box jittered by up to 5 % of its size, a uniform score in ``scores``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    detections = []
    for image_id, (x, y, w, h) in boxes:
        for _ in range(per_box):
            jitter = rng.uniform(-0.05, 0.05, 4) * [w, h, w, h]
            detections.append({"image_id": image_id, "category_id": 1, "score": float(rng.uniform(*scores)),
                               "bbox": [float(v) for v in np.array([x, y, w, h]) + jitter]})
    return detections


def check_cli_predict(cli, *, config, checkpoint, root, tmp_path, extra_args=()):
    """``predict`` of a top-down model on two sample images: two given boxes on one image (and the other's whole
    image), then whole images only; one entry per image with 17 keypoints per person and a drawing."""
    import json
    import os

    images = [os.path.join(root, "images", f) for f in ("000000000785.jpg", "000000040083.jpg")]
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"000000000785.jpg": [[280, 40, 230, 350, 0.8], [10, 10, 100, 200]]}))
    for args, people in ((["--boxes", str(boxes)], [2, 1]), ([], [1, 1])):
        pred = tmp_path / f"pred{len(args)}"
        assert cli.main(["predict", "--config", config, "--checkpoint", checkpoint, "--output-dir", str(pred),
                         *extra_args, *args, *images]) == 0
        entries = json.load(open(pred / "predictions.json"))
        assert [len(e["people"]) for e in entries] == people
        assert len(entries[0]["people"][0]["keypoints"]) == 17
        assert os.path.getsize(pred / "000000040083_pose.png") > 0
