"""TFPose-R50 training step (forward, L1 of every layer + heatmap loss, backward) on posetr's kernels vs the
references, and the encoder's MSDA alone at the same shape (its share of the step).

Both models hold the same weights (``TFPoseConfig()``: ResNet-50, C3-C5, NE = 6, ND = 6, 256 x 192 crops);
``ops: posetr`` runs MSDA on posetr's kernel, ``ops: reference`` on the grid_sample oracle. Batch of
BATCH crops, dropout off so both do the same work. The second case times one encoder layer's MSDA call
(forward + backward, 1008 queries on 3 levels, samples around each query's pixel); six of them are the
encoder's MSDA work in a step.
``quick``: a tiny TFPose (ResNet-18 of width 8, d_model 32) on 2 crops of 64 x 48, to check the cases run.
"""
import dataclasses

import torch

from posetr.ops.ms_deform_attn import ms_deform_attn
from posetr.ops.reference import ms_deform_attn_pytorch
from posetr.profile import Case, forward_backward
from posetr.profile.model_pair import build_model_pair, train_step
from posetr.profile.ms_deform_attn import attention_bytes, make_inputs

# (batch, crop (H, W), C3-C5 level shapes of that crop, MSDA heads, channels per head, points)
FULL = (4, (256, 192), [(32, 24), (16, 12), (8, 6)], 8, 32, 4)
QUICK = (2, (64, 48), [(8, 6), (4, 3), (2, 2)], 4, 8, 4)
# A tiny TFPose for the quick case (the fields of posetr.models.tfpose.TFPoseConfig it overrides).
QUICK_MODEL = dict(backbone_depth=18, backbone_width=8, backbone_norm="group", d_model=32, n_heads=4,
                   dim_feedforward=64, enc_layers=1, dec_layers=2, heatmap_channels=8)


def _targets(batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(batch, 17, 2, generator=g) * 0.8 + 0.1
    return [{"keypoints": torch.cat([xy[b], torch.full((17, 1), 2.0)], -1), "target_weight": torch.ones(17)}
            for b in range(batch)]


def _setup(device, batch, input_size, **model):
    from posetr.models.tfpose import TFPoseConfig

    steps = build_model_pair(dataclasses.replace(TFPoseConfig(), dropout=0.0, **model), device)
    images = torch.randn(batch, 3, *input_size, device=device)
    masks = torch.zeros(batch, *input_size, dtype=torch.bool, device=device)
    targets = [{k: v.to(device) for k, v in t.items()} for t in _targets(batch)]
    return steps, images, masks, targets


def cases(device, quick=False):
    """The TFPose-R50 training step and one encoder layer's MSDA (forward + backward) on 4 crops of
    256 x 192 (quick: the tiny TFPose on 2 crops of 64 x 48)."""
    batch, size, levels, heads, channels, points = QUICK if quick else FULL
    model = QUICK_MODEL if quick else {}
    queries = sum(h * w for h, w in levels)
    crops = f"{batch}x3x{size[0]}x{size[1]}"
    return [
        Case(op="tfpose_step", shape=f"{'tiny TFPose' if quick else 'TFPose-R50'} {crops}", mode="train step",
             reference_name="ops: reference", setup=lambda: _setup(device, batch, size, **model),
             posetr=train_step("posetr"), reference=train_step("reference")),
        Case(op="tfpose_encoder_msda", shape=f"1 layer, {batch}x{queries} queries", mode="forward+backward",
             reference_name="grid_sample",
             setup=lambda: make_inputs(batch, levels, None, heads, channels, points, device, requires_grad=True,
                                       locations="local"),
             posetr=forward_backward(ms_deform_attn), reference=forward_backward(ms_deform_attn_pytorch),
             bytes_moved=lambda inputs: attention_bytes(inputs, inputs[0].shape[3], True)),
    ]
