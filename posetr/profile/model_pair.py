"""Shared pieces of the model training-step cases (petr_step, tfpose_step, poseur_step): one model per ``ops`` with
the same weights, and the timed step (forward, losses, backward). Not a profile module itself: the
profile collects the modules named ``*_step``."""
import dataclasses

import torch


def build_model_pair(cfg, device):
    """{"posetr": (model, criterion), "reference": (model, criterion)} of ``cfg`` with ``ops`` replaced,
    both in training mode on ``device`` with the weights (model and criterion) of the first (seeded with 0)."""
    from posetr.models import build_model

    torch.manual_seed(0)
    steps = {}
    state = None
    for ops in ("posetr", "reference"):
        model, criterion, _ = build_model(dataclasses.replace(cfg, ops=ops))
        if state is None:
            state = model.state_dict(), criterion.state_dict()  # the criterion's: Poseur's flows
        model.load_state_dict(state[0])
        criterion.load_state_dict(state[1])
        steps[ops] = (model.to(device).train(), criterion.to(device))
    return steps


def train_step(ops):
    """A Case callable: on inputs (steps of :func:`build_model_pair`, images, masks, targets), one
    forward, the weighted losses and their backward with the ``ops`` model (gradients reset first)."""

    def run(inputs):
        steps, images, masks, targets = inputs
        model, criterion = steps[ops]
        model.zero_grad(set_to_none=True)
        losses = criterion(model(images, masks), targets)
        sum(criterion.weight_dict[k] * v for k, v in losses.items() if k in criterion.weight_dict).backward()

    return run
