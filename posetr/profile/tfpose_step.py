"""TFPose-R50 training step (forward, L1 of every layer + heatmap loss, backward) on posetr's kernels vs the
references, and the encoder's MSDA alone at the same shape (its share of the step).

Both models hold the same weights (``TFPoseConfig()``: ResNet-50, C3-C5, NE = 6, ND = 6, 256 x 192 crops);
``ops: posetr`` runs MSDA on posetr's kernel, ``ops: reference`` on the grid_sample oracle. Batch of
BATCH crops, dropout off so both do the same work. The second case times one encoder layer's MSDA call
(forward + backward, 1008 queries on 3 levels, samples around each query's pixel); six of them are the
encoder's MSDA work in a step.
"""
import dataclasses

import torch

from posetr.ops.ms_deform_attn import ms_deform_attn
from posetr.ops.reference import ms_deform_attn_pytorch
from posetr.profile import Case, forward_backward
from posetr.profile.model_step import build_model_pair, train_step
from posetr.profile.ms_deform_attn import make_inputs

BATCH = 4
INPUT_SIZE = (256, 192)
ENCODER_LEVELS = [(32, 24), (16, 12), (8, 6)]  # C3-C5 of a 256 x 192 crop


def _targets(batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(batch, 17, 2, generator=g) * 0.8 + 0.1
    return [{"keypoints": torch.cat([xy[b], torch.full((17, 1), 2.0)], -1), "target_weight": torch.ones(17)}
            for b in range(batch)]


def _setup(device):
    from posetr.models.tfpose import TFPoseConfig

    steps = build_model_pair(dataclasses.replace(TFPoseConfig(), dropout=0.0), device)
    images = torch.randn(BATCH, 3, *INPUT_SIZE, device=device)
    masks = torch.zeros(BATCH, *INPUT_SIZE, dtype=torch.bool, device=device)
    targets = [{k: v.to(device) for k, v in t.items()} for t in _targets(BATCH)]
    return steps, images, masks, targets


def cases(device):
    """The TFPose-R50 training step and one encoder layer's MSDA (forward + backward), BATCH crops."""
    size = f"{BATCH}x3x{INPUT_SIZE[0]}x{INPUT_SIZE[1]}"
    return [
        Case(op="tfpose_step", shape=f"TFPose-R50 {size}", mode="train step", setup=lambda: _setup(device),
             posetr=train_step("posetr"), reference=train_step("reference")),
        Case(op="tfpose_encoder_msda", shape=f"1 layer, {BATCH}x1008 queries", mode="forward+backward",
             setup=lambda: make_inputs(BATCH, ENCODER_LEVELS, None, 8, 32, 4, device, requires_grad=True,
                                       locations="local"),
             posetr=forward_backward(ms_deform_attn), reference=forward_backward(ms_deform_attn_pytorch)),
    ]
