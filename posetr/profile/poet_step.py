"""POET-R50 training step (forward, matching of the 6 decoder layers, losses, backward): posetr's matcher
vs the official per-target loop with scipy per image.

One model (``POETConfig()``: the README's POET-R50, N = 50, dropout off so both sides do the same work),
two criteria that differ only in the matcher: ``ops: posetr`` (the [B, N, G] cost in broadcast operations
and one ``batched_linear_sum_assignment`` call per layer) and the official algorithm
(:func:`posetr.profile.poet_match.official_loop_match`); both give the same indices, so the same losses.
Batch: 2 images of 3 x 512 x 512 with 5 and 13 people (``quick``: a tiny POET at 2 x 3 x 128 x 128, for
checking the profile itself, not for numbers).
"""
import copy
import dataclasses

import torch
from torch import nn

from posetr.profile import Case
from posetr.profile.poet_match import WEIGHTS, official_loop_match, random_inputs

IMAGE_SIZE = 512
PEOPLE = (5, 13)
QUICK_IMAGE_SIZE = 128
QUICK_MODEL = dict(backbone_depth=18, backbone_width=8, backbone_norm="group", d_model=32, n_heads=4,
                   enc_layers=1, dec_layers=2, dim_feedforward=64, num_queries=20)


class OfficialLoopMatcher(nn.Module):
    """:func:`official_loop_match` with the README weights, called as ``POETMatcher`` is."""

    @torch.no_grad()
    def forward(self, outputs, batch):
        return official_loop_match(outputs, batch, **WEIGHTS)


def _setup(device, size=IMAGE_SIZE, **model_fields):
    from posetr.models import build_model
    from posetr.models.poet import POETConfig

    torch.manual_seed(0)
    model, criterion, _ = build_model(dataclasses.replace(POETConfig(), dropout=0.0, **model_fields))
    official = copy.deepcopy(criterion)
    official.matcher = OfficialLoopMatcher()
    images = torch.randn(len(PEOPLE), 3, size, size, device=device)
    masks = torch.zeros(len(PEOPLE), size, size, dtype=torch.bool, device=device)
    _, targets = random_inputs(batch=len(PEOPLE), num_queries=1, people=PEOPLE, device=device)
    criteria = {"posetr": criterion.to(device), "reference": official.to(device)}
    return model.to(device).train(), criteria, images, masks, targets


def _step(name):
    def run(inputs):
        model, criteria, images, masks, targets = inputs
        criterion = criteria[name]
        model.zero_grad(set_to_none=True)
        losses = criterion(model(images, masks), targets)
        sum(criterion.weight_dict[k] * v for k, v in losses.items() if k in criterion.weight_dict).backward()

    return run


def cases(device, quick=False):
    """One case: the POET-R50 training step at 2 x 3 x 512 x 512 (quick: a tiny POET at 128 x 128)."""
    if quick:
        shape, setup = f"tiny POET 2x3x{QUICK_IMAGE_SIZE}x{QUICK_IMAGE_SIZE}", lambda: _setup(
            device, QUICK_IMAGE_SIZE, **QUICK_MODEL)
    else:
        shape, setup = f"POET-R50 2x3x{IMAGE_SIZE}x{IMAGE_SIZE}", lambda: _setup(device)
    return [Case(op="poet_step", shape=f"{shape}, {'+'.join(map(str, PEOPLE))} people", mode="train step",
                 setup=setup, posetr=_step("posetr"), reference=_step("reference"))]
