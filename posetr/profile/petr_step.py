"""PETR-R50 training step (forward, matching, losses, backward) on posetr's kernels vs the references.

Both models hold the same weights (opera's PETR-R50 configuration, ``PETRConfig()``); ``ops: posetr``
runs MSDA, OKS and the batched Hungarian matcher on posetr's ops, ``ops: reference`` on the PyTorch
oracles and scipy once per image. One image, 3 people, dropout off so both do the same work.
``quick``: a tiny PETR (ResNet-18 of width 8, d_model 32) on a 128 x 128 image, to check the case runs.
"""
import dataclasses

import torch

from posetr.profile import Case
from posetr.profile.model_pair import build_model_pair, train_step

IMAGE_SIZE = 512
NUM_PEOPLE = 3
QUICK_IMAGE_SIZE = 128
# A tiny PETR for the quick case (the fields of posetr.models.petr.PETRConfig it overrides).
QUICK_MODEL = dict(backbone_depth=18, backbone_width=8, backbone_norm="group", d_model=32, n_heads=4,
                   dim_feedforward=64, enc_layers=1, dec_layers=1, joint_dec_layers=1, num_queries=12,
                   kpt_branch_hidden=32, num_detections=10)


def _targets(num_people, size, seed=0):
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(num_people, 1, 2, generator=g) * 0.5 + 0.25
    xy = (centre + (torch.rand(num_people, 17, 2, generator=g) - 0.5) * 0.3).clamp(0.02, 0.98)
    lo, hi = xy.amin(1), xy.amax(1)
    return {"keypoints": torch.cat([xy, torch.full((num_people, 17, 1), 2.0)], -1),
            "area": (hi - lo).prod(-1) * size * size * 0.6, "boxes": torch.cat([(lo + hi) / 2, hi - lo], -1),
            "labels": torch.zeros(num_people, dtype=torch.long), "size": torch.tensor([size, size]),
            "orig_size": torch.tensor([size, size]), "image_id": seed}


def _setup(device, size=IMAGE_SIZE, **model):
    from posetr.models.petr import PETRConfig

    steps = build_model_pair(dataclasses.replace(PETRConfig(), dropout=0.0, **model), device)
    images = torch.randn(1, 3, size, size, device=device)
    masks = torch.zeros(1, size, size, dtype=torch.bool, device=device)
    targets = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in _targets(NUM_PEOPLE, size).items()}]
    return steps, images, masks, targets


def cases(device, quick=False):
    """One case: the PETR-R50 training step at 1 x 3 x 512 x 512 (quick: the tiny PETR at 128 x 128)."""
    if quick:
        shape, setup = f"tiny PETR 1x3x{QUICK_IMAGE_SIZE}x{QUICK_IMAGE_SIZE}", lambda: _setup(
            device, QUICK_IMAGE_SIZE, **QUICK_MODEL)
    else:
        shape, setup = f"PETR-R50 1x3x{IMAGE_SIZE}x{IMAGE_SIZE}", lambda: _setup(device)
    return [Case(op="petr_step", shape=f"{shape}, {NUM_PEOPLE} people", mode="train step",
                 reference_name="ops: reference", setup=setup, posetr=train_step("posetr"),
                 reference=train_step("reference"))]
