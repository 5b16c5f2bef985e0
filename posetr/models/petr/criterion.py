"""PETR's losses (opera ``PETRHead.loss`` / ``forward_refine``), unweighted, with their weights.

Per pose decoder layer (names ``loss_cls``, ``loss_kpt``, ``loss_oks`` for the last, suffix ``_i`` for
layer i < last): sigmoid focal classification over all queries / number of people; keypoint L1 over the
labelled coordinates of matched people / their count; ``-log(OKS)`` (pixels) summed over matched people /
number of people. Encoder proposals: ``enc_loss_cls`` (focal) and ``enc_loss_kpt`` (L1), matched on
their own. Joint decoder layers (on the queries matched at the last pose layer): ``loss_joint_kpt`` and
``loss_joint_oks`` (suffix ``_i`` for earlier layers). Heatmap: ``loss_hm`` (CornerNet focal).

The number of people is averaged over processes when torch.distributed is initialised (DETR).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from posetr.models.common.distributed import global_count
from posetr.models.common.kernels import Kernels
from posetr.models.petr.heatmap import heatmap_focal_loss, render_heatmaps


def sigmoid_focal_loss(logits, targets, alpha: float, gamma: float):
    """Summed sigmoid focal loss (RetinaNet; DETR's ``sigmoid_focal_loss`` without the division)."""
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.sum()


class PETRCriterion(nn.Module):
    """Forward: (outputs of :class:`posetr.models.petr.PETR`, targets of the data contract) ->
    dict of unweighted scalar losses; ``weight_dict`` maps every name to its weight."""

    def __init__(self, *, matcher, kernels: Kernels, sigmas: torch.Tensor, weights: dict, focal_alpha: float,
                 focal_gamma: float, num_dec_layers: int, num_joint_layers: int, aux_loss: bool, heatmap: bool):
        super().__init__()
        self.matcher = matcher
        self.kernels = kernels
        self.register_buffer("sigmas", sigmas.float(), persistent=False)
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.aux_loss = aux_loss
        self.heatmap = heatmap
        w = weights
        self.weight_dict = {"loss_cls": w["cls"], "loss_kpt": w["kpt"], "loss_oks": w["oks"],
                            "enc_loss_cls": w["cls"], "enc_loss_kpt": w["enc_kpt"]}
        if aux_loss:
            for i in range(num_dec_layers - 1):
                self.weight_dict.update({f"loss_cls_{i}": w["cls"], f"loss_kpt_{i}": w["kpt"], f"loss_oks_{i}": w["oks"]})
        for i in range(num_joint_layers):
            suffix = "" if i == num_joint_layers - 1 else f"_{i}"
            if aux_loss or not suffix:
                self.weight_dict.update({f"loss_joint_kpt{suffix}": w["joint_kpt"],
                                         f"loss_joint_oks{suffix}": w["joint_oks"]})
        if heatmap:
            self.weight_dict["loss_hm"] = w["hm"]

    def _gather(self, keypoints, targets, indices):
        """Matched predictions Float[P, K, 2] and targets (keypoints Float[P, K, 3], area, scale Float[P, 2])."""
        batch = torch.cat([torch.full_like(i, b) for b, (i, _) in enumerate(indices)]).to(keypoints.device)
        src = torch.cat([i for i, _ in indices]).to(keypoints.device)
        pred = keypoints[batch, src]
        gt = torch.cat([t["keypoints"][j.to(t["keypoints"].device)] for t, (_, j) in zip(targets, indices)])
        area = torch.cat([t["area"][j.to(t["area"].device)] for t, (_, j) in zip(targets, indices)])
        scale = torch.stack([torch.stack([t["size"][1], t["size"][0]]) for t in targets]).to(pred)[batch.long()]
        dev = pred.device
        return pred, gt.to(dev, pred.dtype), area.to(dev, pred.dtype), scale

    def _keypoint_losses(self, keypoints, targets, indices, num_people, with_oks=True):
        pred, gt, area, scale = self._gather(keypoints, targets, indices)
        visible = gt[..., 2] > 0
        num_coords = max(2.0 * visible.sum().item(), 1.0)
        loss_kpt = ((pred - gt[..., :2]).abs() * visible[..., None]).sum() / num_coords
        if not with_oks:
            return loss_kpt, None
        if pred.shape[0] == 0:
            return loss_kpt, keypoints.sum() * 0
        px = scale[:, None, :]
        loss_oks = self.kernels.oks_loss(pred * px, gt[..., :2] * px, visible, area,
                                         self.sigmas.to(pred.dtype), mode="log", reduction="sum")
        return loss_kpt, loss_oks / num_people

    def _layer_losses(self, out, targets, num_people, with_oks=True):
        indices = self.matcher(out, targets)
        logits = out["pred_logits"]
        labels = torch.zeros_like(logits)
        for b, (i, _) in enumerate(indices):
            labels[b, i.to(logits.device), 0] = 1.0
        loss_cls = sigmoid_focal_loss(logits, labels, self.focal_alpha, self.focal_gamma) / num_people
        loss_kpt, loss_oks = self._keypoint_losses(out["pred_keypoints"], targets, indices, num_people, with_oks)
        return indices, loss_cls, loss_kpt, loss_oks

    def forward(self, outputs: dict, targets: list) -> dict:
        device = outputs["pred_logits"].device
        num_people = global_count(sum(int(t["keypoints"].shape[0]) for t in targets), device)
        losses = {}
        indices, losses["loss_cls"], losses["loss_kpt"], losses["loss_oks"] = self._layer_losses(
            outputs, targets, num_people)
        if self.aux_loss:
            for i, aux in enumerate(outputs.get("aux_outputs", [])):
                _, losses[f"loss_cls_{i}"], losses[f"loss_kpt_{i}"], losses[f"loss_oks_{i}"] = self._layer_losses(
                    aux, targets, num_people)
        if "enc_outputs" in outputs:
            _, losses["enc_loss_cls"], losses["enc_loss_kpt"], _ = self._layer_losses(
                outputs["enc_outputs"], targets, num_people, with_oks=False)
        joint = outputs.get("joint_outputs", [])
        for i, layer in enumerate(joint):
            suffix = "" if i == len(joint) - 1 else f"_{i}"
            if self.aux_loss or not suffix:
                losses[f"loss_joint_kpt{suffix}"], losses[f"loss_joint_oks{suffix}"] = self._keypoint_losses(
                    layer["pred_keypoints"], targets, indices, num_people)
        if self.heatmap and "pred_heatmap" in outputs:
            logits = outputs["pred_heatmap"]
            target = render_heatmaps(targets, logits.shape).to(logits)
            losses["loss_hm"] = heatmap_focal_loss(logits, target, outputs["heatmap_mask"])
        return losses


def build_criterion(cfg, *, matcher, kernels: Kernels, sigmas: torch.Tensor) -> PETRCriterion:
    """Criterion with ``cfg``'s (PETRConfig) loss weights."""
    weights = {"cls": cfg.loss_cls, "kpt": cfg.loss_kpt, "oks": cfg.loss_oks, "enc_kpt": cfg.loss_enc_kpt,
               "hm": cfg.loss_hm, "joint_kpt": cfg.loss_joint_kpt, "joint_oks": cfg.loss_joint_oks}
    return PETRCriterion(matcher=matcher, kernels=kernels, sigmas=sigmas, weights=weights,
                         focal_alpha=cfg.focal_alpha, focal_gamma=cfg.focal_gamma, num_dec_layers=cfg.dec_layers,
                         num_joint_layers=cfg.joint_dec_layers, aux_loss=cfg.aux_loss, heatmap=cfg.heatmap)
