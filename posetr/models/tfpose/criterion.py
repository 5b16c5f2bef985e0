"""TFPose's losses (paper Eqs. 5-7), unweighted, with their weights.

- ``loss_kpt`` (last decoder layer) and ``loss_kpt_{d}`` (layer d < ND - 1): L1 between the layer's
  keypoints and the ground truth, every layer with the same weight (Eq. 5). [D] unlabelled joints and
  joints outside the crop are masked by ``target_weight`` and the reduction is mmpose's ``L1Loss
  (use_target_weight=True)`` of its regression (DeepPose) heads: mean over B x K x 2 of
  |w * (pred - gt)|, in crop-normalised coordinates (the sigmoid outputs' space).
- ``loss_heatmap`` (training with the auxiliary branch): MSE between the predicted heatmaps and UDP
  Gaussian targets (Eq. 6, ``heatmap.py``), weight lambda = 50 (Eq. 7).

No matching: query k is joint k.
"""
from __future__ import annotations

from torch import nn

from posetr.models.common.top_down import stack_targets
from posetr.models.tfpose.heatmap import heatmap_mse_loss, render_udp_heatmaps


class TFPoseCriterion(nn.Module):
    """Forward: (outputs of :class:`posetr.models.tfpose.model.TFPose`, targets of the top-down contract:
    per crop ``keypoints`` Float[K, 3] normalised, ``target_weight`` Float[K]) -> dict of unweighted scalar
    losses; ``weight_dict`` maps every name to its weight.

    Raises:
        ValueError: a target whose ``keypoints`` / ``target_weight`` shape does not match K (names the crop).
    """

    def __init__(self, *, num_dec_layers: int, num_keypoints: int, loss_kpt: float, loss_heatmap: float,
                 aux_heatmap: bool, heatmap_sigma: float):
        super().__init__()
        self.num_keypoints = num_keypoints
        self.heatmap_sigma = heatmap_sigma
        self.weight_dict = {"loss_kpt": loss_kpt}
        for d in range(num_dec_layers - 1):
            self.weight_dict[f"loss_kpt_{d}"] = loss_kpt
        if aux_heatmap:
            self.weight_dict["loss_heatmap"] = loss_heatmap

    def forward(self, outputs: dict, targets: list[dict]) -> dict:
        layer_keypoints = outputs["layer_keypoints"]  # [ND, B, K, 2]
        gt, weight = stack_targets(targets, num_keypoints=self.num_keypoints, like=layer_keypoints)
        per_layer = ((layer_keypoints - gt) * weight[..., None]).abs().flatten(1).mean(1)  # [ND]
        num_layers = per_layer.shape[0]
        losses = {"loss_kpt" if d == num_layers - 1 else f"loss_kpt_{d}": per_layer[d] for d in range(num_layers)}
        if "pred_heatmap" in outputs and "loss_heatmap" in self.weight_dict:
            pred = outputs["pred_heatmap"]
            heatmaps, hm_weight = render_udp_heatmaps(gt, weight, input_size=outputs["input_size"],
                                                      heatmap_size=pred.shape[-2:], sigma=self.heatmap_sigma)
            losses["loss_heatmap"] = heatmap_mse_loss(pred, heatmaps.to(pred.dtype), hm_weight.to(pred.dtype))
        return losses


def build_criterion(cfg) -> TFPoseCriterion:
    """Criterion of ``cfg`` (TFPoseConfig)."""
    return TFPoseCriterion(num_dec_layers=cfg.dec_layers, num_keypoints=cfg.num_keypoints, loss_kpt=cfg.loss_kpt,
                           loss_heatmap=cfg.loss_heatmap, aux_heatmap=cfg.aux_heatmap,
                           heatmap_sigma=cfg.heatmap_sigma)
