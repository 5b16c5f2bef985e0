"""POET's losses (amathislab/poet ``models/poet.py``: ``SetCriterion.loss_labels`` and ``loss_kpts``),
unweighted, with their weights in ``weight_dict``.

Per decoder layer (names below for the last layer, suffix ``_i`` for earlier layer i, each matched on its
own), over the matched (query, person) pairs, with v' the person's joint visibilities and c_v its centre
visibility (codec.py):

- ``loss_ce``: cross-entropy over ALL N queries of every image, unmatched ones targeting no-object, class
  weights 1 and ``eos_coef`` for no-object (PyTorch's weighted mean);
- ``loss_kpts``: sum of v' |joint - target joint| (L1 of absolute normalised joints);
- ``loss_deltas``: sum of v' |d' - target d'| (L1 of the remapped offsets);
- ``loss_ctrs``: sum of c_v (centre - target centre)^2;
- ``loss_vis`` (official ``loss_kpts_class``): sum of c_v (visibility scores - v')^2 over the K joints;

each geometric sum divided by the number of people in the batch, averaged over the processes of
torch.distributed and at least 1 (``global_count``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from posetr.models.common.distributed import global_count
from posetr.models.poet.codec import CLASS_HEADS, TargetBatch, batch_targets, decode_keypoints, split_prediction

LOSS_NAMES = ("loss_ce", "loss_kpts", "loss_ctrs", "loss_deltas", "loss_vis")


class POETCriterion(nn.Module):
    """Forward: (outputs of :class:`~posetr.models.poet.model.POET`, targets of the data contract) ->
    dict of unweighted scalar losses (``LOSS_NAMES`` and, with ``aux_loss``, the same with ``_0`` ..
    ``_{L-2}``); ``weight_dict`` maps every name to its weight.

    Args:
        matcher: :class:`~posetr.models.poet.matcher.POETMatcher`.
        num_logits: C + 1 (the last class is no-object).
        weights: {"ce", "kpts", "ctrs", "deltas", "vis"} loss weights.
        eos_coef: cross-entropy weight of the no-object class.
        num_dec_layers: decoder layers (the weight dict holds the aux names of the first ``num_dec_layers - 1``).
        aux_loss: losses on the earlier decoder layers too.
        num_keypoints, visible_threshold, class_head: how targets are encoded (codec.py).
    """

    def __init__(self, *, matcher, num_logits: int, weights: dict, eos_coef: float, num_dec_layers: int,
                 aux_loss: bool, num_keypoints: int, visible_threshold: int, class_head: str):
        super().__init__()
        self.matcher = matcher
        self.aux_loss = aux_loss
        self.num_keypoints = num_keypoints
        self.visible_threshold = visible_threshold
        self.class_head = class_head
        empty_weight = torch.ones(num_logits)
        empty_weight[-1] = eos_coef
        self.register_buffer("empty_weight", empty_weight, persistent=False)
        layer = {name: weights[name[len("loss_"):]] for name in LOSS_NAMES}
        self.weight_dict = dict(layer)
        if aux_loss:
            for i in range(num_dec_layers - 1):
                self.weight_dict.update({f"{k}_{i}": v for k, v in layer.items()})

    def layer_losses(self, out: dict, batch: TargetBatch, num_people: float) -> dict:
        """The five losses of one decoder layer's outputs (matched here)."""
        indices = self.matcher(out, batch)
        logits, pred = out["pred_logits"], out["pred_kpts"]
        device = logits.device
        b = torch.cat([torch.full_like(i, n) for n, (i, _) in enumerate(indices)]).to(device)
        src = torch.cat([i for i, _ in indices]).to(device)
        tgt = torch.cat([j for _, j in indices]).to(device)
        classes = torch.full(logits.shape[:2], logits.shape[-1] - 1, dtype=torch.long, device=device)
        classes[b, src] = batch.labels[b, tgt]
        if logits.dtype != torch.float64:  # bf16 autocast: the loss in float32
            logits = logits.float()
        losses = {"loss_ce": F.cross_entropy(logits.transpose(1, 2), classes, self.empty_weight.to(logits.dtype))}
        center, offsets, vis = split_prediction(pred[b, src])
        t = batch.poses
        visible = t.visible[b, tgt][..., None]
        cv = t.center_visible[b, tgt][:, None]
        joints = decode_keypoints(center, offsets)
        losses["loss_kpts"] = ((joints - t.keypoints[b, tgt]).abs() * visible).sum() / num_people
        losses["loss_ctrs"] = ((center - t.center[b, tgt]).square() * cv).sum() / num_people
        losses["loss_deltas"] = ((offsets - t.offsets[b, tgt]).abs() * visible).sum() / num_people
        losses["loss_vis"] = ((vis - t.visible[b, tgt]).square() * cv).sum() / num_people
        return losses

    def forward(self, outputs: dict, targets: list) -> dict:
        device = outputs["pred_logits"].device
        dtype = torch.float64 if outputs["pred_kpts"].dtype == torch.float64 else torch.float32
        batch = batch_targets(targets, num_keypoints=self.num_keypoints, visible_threshold=self.visible_threshold,
                              class_head=self.class_head, device=device, dtype=dtype)
        num_people = global_count(sum(batch.sizes), device)
        losses = self.layer_losses(outputs, batch, num_people)
        if self.aux_loss:
            for i, aux in enumerate(outputs.get("aux_outputs", [])):
                losses.update({f"{k}_{i}": v for k, v in self.layer_losses(aux, batch, num_people).items()})
        return losses


def build_criterion(cfg, *, matcher) -> POETCriterion:
    """Criterion with ``cfg``'s (POETConfig) loss weights."""
    weights = {"ce": cfg.loss_ce, "kpts": cfg.loss_kpts, "ctrs": cfg.loss_ctrs, "deltas": cfg.loss_deltas,
               "vis": cfg.loss_vis}
    return POETCriterion(matcher=matcher, num_logits=CLASS_HEADS[cfg.class_head], weights=weights,
                         eos_coef=cfg.eos_coef, num_dec_layers=cfg.dec_layers, aux_loss=cfg.aux_loss,
                         num_keypoints=cfg.num_keypoints, visible_threshold=cfg.visible_threshold,
                         class_head=cfg.class_head)
