"""A tiny stand-in for ``posetr.models.build_model`` that follows docs/model_interfaces.md, so the data /
engine tests do not depend on the PETR model: conv features -> pooled -> Q people x K keypoints.
Query i is trained towards person i of the image (no Hungarian matching)."""
import torch
from torch import nn


class TinyPoseModel(nn.Module):
    def __init__(self, num_queries=4, num_keypoints=17):
        super().__init__()
        self.q, self.k = num_queries, num_keypoints
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.head = nn.Linear(8 * 16, num_queries * (1 + 2 * num_keypoints))

    def forward(self, images, masks):
        x = images.masked_fill(masks[:, None], 0.0)
        out = self.head(self.backbone(x)).view(len(images), self.q, 1 + 2 * self.k)
        return {"pred_logits": out[..., :1], "pred_keypoints": out[..., 1:].view(len(images), self.q, self.k, 2).sigmoid()}


class TinyCriterion(nn.Module):
    weight_dict = {"loss_cls": 1.0, "loss_kpt": 5.0}

    def forward(self, outputs, targets):
        logits, kpts = outputs["pred_logits"][..., 0], outputs["pred_keypoints"]
        cls_target = torch.zeros_like(logits)
        l1, count = kpts.sum() * 0.0, 0
        for b, t in enumerate(targets):
            g = min(len(t["keypoints"]), logits.shape[1])
            cls_target[b, :g] = 1.0
            vis = (t["keypoints"][:g, :, 2] > 0).unsqueeze(-1).float()
            l1 = l1 + ((kpts[b, :g] - t["keypoints"][:g, :, :2]).abs() * vis).sum()
            count += int(vis.sum())
        return {"loss_cls": nn.functional.binary_cross_entropy_with_logits(logits, cls_target),
                "loss_kpt": l1 / max(count, 1)}


class TinyPostProcessor(nn.Module):
    @torch.no_grad()
    def forward(self, outputs, orig_sizes):
        scores = outputs["pred_logits"][..., 0].sigmoid()
        results = []
        for s, k, (h, w) in zip(scores, outputs["pred_keypoints"], orig_sizes.tolist()):
            xy = k * torch.tensor([w, h], dtype=k.dtype)
            results.append({"scores": s, "keypoints": torch.cat([xy, s[:, None, None].expand(-1, k.shape[1], 1)], -1)})
        return results


def build_tiny(model_cfg):
    torch.manual_seed(0)
    return TinyPoseModel(num_keypoints=model_cfg.num_keypoints), TinyCriterion(), TinyPostProcessor()


class OracleModel(nn.Module):
    """Returns the given targets as predictions, one batch per call (for evaluation tests)."""

    def __init__(self, batches, num_queries=8):
        super().__init__()
        self.batches, self.q = list(batches), num_queries
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, images, masks):
        targets = self.batches.pop(0)
        k = targets[0]["keypoints"].shape[1]
        logits = torch.full((len(targets), self.q, 1), -10.0)
        kpts = torch.full((len(targets), self.q, k, 2), 0.5)
        for b, t in enumerate(targets):
            g = len(t["keypoints"])
            logits[b, :g] = 10.0
            kpts[b, :g] = t["keypoints"][..., :2]
        return {"pred_logits": logits, "pred_keypoints": kpts}


_BUILT = []


def build_tiny_recording(model_cfg):
    parts = build_tiny(model_cfg)
    _BUILT.append(parts[0])
    return parts


def ddp_worker(rank, world_size, port, cfg, out_dir):
    """One of ``world_size`` gloo processes training the stand-in; saves its final weights."""
    import os

    from posetr.engine.train import train

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    train(cfg, output_dir=out_dir, build_model=build_tiny_recording)
    torch.save(_BUILT[-1].state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()
