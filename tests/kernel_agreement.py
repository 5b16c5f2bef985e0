"""Helpers of the "ops: posetr vs ops: reference" model tests: the same weights in float64 on both."""
import torch


def twin_in_float64(model, ref_model):
    """Copies ``model``'s weights into ``ref_model`` and makes both float64, after moving every sampling
    offset bias off the initial integer grid: Deformable DETR's initial offsets put encoder samples exactly
    on pixel centres, where bilinear sampling has a kink (the kernel and grid_sample take different one-sided
    gradients)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("sampling_offsets.bias"):
                p.add_(torch.rand_like(p) * 0.2 - 0.1)
    ref_model.load_state_dict(model.state_dict())
    model.double()
    ref_model.double()


def assert_same_gradients(model, ref_model, *, rtol=1e-7, atol=1e-9):
    ref_grads = dict(ref_model.named_parameters())
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[name].grad, rtol=rtol, atol=atol, msg=name)
